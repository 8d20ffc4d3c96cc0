package cloud

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
)

// Credentials are what Connect needs to reach Keystone and find Nova.
type Credentials struct {
	Auth     gophercloud.AuthOptions
	Endpoint gophercloud.EndpointOpts
	TLS      *tls.Config
	// Source says where the credentials came from ("clouds.yaml cloud X" or
	// "OS_* environment"), for messages.
	Source string
}

// CredentialsFromEnv reads OpenStack credentials the way the OpenStack
// command-line client does: with OS_CLOUD set, the named cloud of a
// clouds.yaml (OS_CLIENT_CONFIG_FILE, else ./clouds.yaml,
// ~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml); otherwise the
// OS_* variables (OS_AUTH_URL, OS_USERNAME or OS_USER_ID, OS_PASSWORD, or an
// application credential; OS_PROJECT_NAME or OS_PROJECT_ID; the user's and
// project's domains; OS_REGION_NAME, OS_INTERFACE, OS_CACERT).
//
// getenv is os.Getenv in a program and a map in a test. When neither a cloud
// name nor OS_AUTH_URL is set the error matches ErrNoCredentials.
func CredentialsFromEnv(getenv func(string) string) (Credentials, error) {
	if name := getenv("OS_CLOUD"); name != "" {
		opts := []clouds.ParseOption{clouds.WithCloudName(name)}
		if f := getenv("OS_CLIENT_CONFIG_FILE"); f != "" {
			opts = append(opts, clouds.WithLocations(f))
		}
		if r := getenv("OS_REGION_NAME"); r != "" {
			opts = append(opts, clouds.WithRegion(r))
		}
		ao, eo, tc, err := clouds.Parse(opts...)
		if err != nil {
			return Credentials{}, fmt.Errorf("%w: OS_CLOUD=%s: %v", ErrNoCredentials, name, err)
		}
		ao.AllowReauth = true
		return Credentials{Auth: ao, Endpoint: eo, TLS: tc, Source: "clouds.yaml cloud " + name}, nil
	}
	authURL := getenv("OS_AUTH_URL")
	if authURL == "" {
		return Credentials{}, fmt.Errorf("%w: set OS_CLOUD (clouds.yaml) or OS_AUTH_URL and the other OS_* variables", ErrNoCredentials)
	}
	ao := gophercloud.AuthOptions{
		IdentityEndpoint:            authURL,
		Username:                    getenv("OS_USERNAME"),
		UserID:                      first(getenv("OS_USER_ID"), getenv("OS_USERID")),
		Password:                    getenv("OS_PASSWORD"),
		DomainID:                    first(getenv("OS_USER_DOMAIN_ID"), getenv("OS_DOMAIN_ID")),
		DomainName:                  first(getenv("OS_USER_DOMAIN_NAME"), getenv("OS_DOMAIN_NAME")),
		ApplicationCredentialID:     getenv("OS_APPLICATION_CREDENTIAL_ID"),
		ApplicationCredentialName:   getenv("OS_APPLICATION_CREDENTIAL_NAME"),
		ApplicationCredentialSecret: getenv("OS_APPLICATION_CREDENTIAL_SECRET"),
		AllowReauth:                 true,
	}
	if ao.ApplicationCredentialID == "" && ao.ApplicationCredentialName == "" {
		if ao.Username == "" && ao.UserID == "" {
			return Credentials{}, fmt.Errorf("%w: OS_AUTH_URL is set but neither OS_USERNAME nor OS_USER_ID", ErrNoCredentials)
		}
		if ao.Password == "" {
			return Credentials{}, fmt.Errorf("%w: OS_PASSWORD is not set", ErrNoCredentials)
		}
		projectID, projectName := getenv("OS_PROJECT_ID"), first(getenv("OS_PROJECT_NAME"), getenv("OS_TENANT_NAME"))
		if projectID == "" {
			projectID = getenv("OS_TENANT_ID")
		}
		switch {
		case projectID != "":
			ao.Scope = &gophercloud.AuthScope{ProjectID: projectID}
		case projectName != "":
			ao.Scope = &gophercloud.AuthScope{
				ProjectName: projectName,
				DomainID:    first(getenv("OS_PROJECT_DOMAIN_ID"), getenv("OS_DOMAIN_ID"), ao.DomainID),
				DomainName:  first(getenv("OS_PROJECT_DOMAIN_NAME"), getenv("OS_DOMAIN_NAME"), ao.DomainName),
			}
			if ao.Scope.DomainID != "" {
				ao.Scope.DomainName = ""
			}
		}
		if ao.UserID != "" {
			ao.Username, ao.DomainID, ao.DomainName = "", "", ""
		} else if ao.DomainID != "" {
			ao.DomainName = ""
		}
	}
	cr := Credentials{
		Auth:     ao,
		Endpoint: gophercloud.EndpointOpts{Region: getenv("OS_REGION_NAME"), Availability: availability(getenv("OS_INTERFACE"))},
		Source:   "OS_* environment",
	}
	if ca := getenv("OS_CACERT"); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return Credentials{}, fmt.Errorf("%w: OS_CACERT: %v", ErrNoCredentials, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return Credentials{}, fmt.Errorf("%w: OS_CACERT %s holds no PEM certificate", ErrNoCredentials, ca)
		}
		cr.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return cr, nil
}

// HasCredentials reports whether getenv names any OpenStack credentials, so
// that a caller can treat them as optional.
func HasCredentials(getenv func(string) string) bool {
	return getenv("OS_CLOUD") != "" || getenv("OS_AUTH_URL") != ""
}

func availability(s string) gophercloud.Availability {
	switch s {
	case "internal", "internalURL":
		return gophercloud.AvailabilityInternal
	case "admin", "adminURL":
		return gophercloud.AvailabilityAdmin
	}
	return gophercloud.AvailabilityPublic
}

func first(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
