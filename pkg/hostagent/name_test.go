package hostagent

import (
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
)

func TestNovaConfHost(t *testing.T) {
	tests := []struct {
		name  string
		conf  string
		host  string
		found bool
		err   string
	}{
		{name: "plain", conf: "[DEFAULT]\nhost = fake-compute-1\n", host: "fake-compute-1", found: true},
		{name: "colon and no spaces", conf: "[DEFAULT]\nhost:fake-compute-2\n", host: "fake-compute-2", found: true},
		{name: "quoted", conf: "[DEFAULT]\nhost = \"cmp-3\"\n", host: "cmp-3", found: true},
		{name: "commented out", conf: "[DEFAULT]\n#host = nope\n; host = nope2\n", found: false},
		{name: "comment then value", conf: "[DEFAULT]\n# host = old\nhost = new\n", host: "new", found: true},
		{name: "later assignment wins", conf: "[DEFAULT]\nhost = a\nhost = b\n", host: "b", found: true},
		{name: "other section", conf: "[DEFAULT]\ndebug = true\n[libvirt]\nhost = not-this\n", found: false},
		{name: "back to DEFAULT", conf: "[libvirt]\nhost = x\n[DEFAULT]\nhost = y\n[vnc]\nhost = z\n", host: "y", found: true},
		{name: "section names are case-sensitive", conf: "[default]\nhost = lower\n", found: false},
		{name: "my_ip is not host", conf: "[DEFAULT]\nmy_ip = 10.0.0.1\nhostname = h\n", found: false},
		{name: "empty value means unset", conf: "[DEFAULT]\nhost =\n", found: false},
		{name: "inline comment stays in the value", conf: "[DEFAULT]\nhost = h1 # the first\n", host: "h1 # the first", found: true},
		{name: "CRLF and BOM", conf: "\ufeff[DEFAULT]\r\nhost = win\r\n", host: "win", found: true},
		{name: "indented comment is a continuation", conf: "[DEFAULT]\nhost = a\n  # more\n", host: "a\n# more", found: true},
		{name: "continuation after blank ends", conf: "[DEFAULT]\nhost = a\n\nother = 1\n", host: "a", found: true},
		{name: "no DEFAULT at all", conf: "", found: false},
		{name: "continuation without option", conf: "[DEFAULT]\n  stray\n", err: "continuation"},
		{name: "bad header", conf: "[DEFAULT\nhost = a\n", err: "section header"},
		{name: "not an assignment", conf: "[DEFAULT]\njust words\n", err: "neither an option"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			host, found, err := NovaConfHost(strings.NewReader(tc.conf))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if host != tc.host || found != tc.found {
				t.Fatalf("got (%q, %v), want (%q, %v)", host, found, tc.host, tc.found)
			}
		})
	}
}

func TestDiscoverName(t *testing.T) {
	files := map[string]string{
		"/etc/nova/nova.conf":         "[DEFAULT]\nhost = from-nova-conf\n",
		"/etc/nova/nova-compute.conf": "[DEFAULT]\nhost = from-compute-conf\n",
		"/etc/nova/nohost.conf":       "[DEFAULT]\ndebug = true\n",
		"/etc/nova/bad-name.conf":     "[DEFAULT]\nhost = bad name\n",
		"/etc/nova/broken.conf":       "[DEFAULT\n",
	}
	open := func(p string) (io.ReadCloser, error) {
		if s, ok := files[p]; ok {
			return io.NopCloser(strings.NewReader(s)), nil
		}
		return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
	}
	hostname := func() (string, error) { return "os-hostname", nil }
	tests := []struct {
		name     string
		src      NameSources
		want     string
		source   string
		errMatch string
	}{
		{name: "flag wins", src: NameSources{Flag: "flag-host", NovaConfs: []string{"/etc/nova/nova.conf"}}, want: "flag-host", source: SourceFlag},
		{name: "nova.conf", src: NameSources{NovaConfs: []string{"/etc/nova/nova.conf"}}, want: "from-nova-conf", source: "nova.conf /etc/nova/nova.conf"},
		{name: "later file wins", src: NameSources{NovaConfs: []string{"/etc/nova/nova.conf", "/etc/nova/nova-compute.conf"}}, want: "from-compute-conf", source: "nova.conf /etc/nova/nova-compute.conf"},
		{name: "later file without host does not unset", src: NameSources{NovaConfs: []string{"/etc/nova/nova.conf", "/etc/nova/nohost.conf"}}, want: "from-nova-conf", source: "nova.conf /etc/nova/nova.conf"},
		{name: "hostname fallback", src: NameSources{NovaConfs: []string{"/etc/nova/nohost.conf"}}, want: "os-hostname", source: SourceHostname},
		{name: "missing default files are skipped", src: NameSources{NovaConfs: []string{"/missing.conf"}}, want: "os-hostname", source: SourceHostname},
		{name: "missing named file is an error", src: NameSources{NovaConfs: []string{"/missing.conf"}, Required: true}, errMatch: "nova.conf"},
		{name: "broken file is an error", src: NameSources{NovaConfs: []string{"/etc/nova/broken.conf"}}, errMatch: "section header"},
		{name: "invalid name is rejected by filter's rules", src: NameSources{NovaConfs: []string{"/etc/nova/bad-name.conf"}}, errMatch: "outside [A-Za-z0-9._-]"},
		{name: "invalid flag name", src: NameSources{Flag: "a/b"}, errMatch: "host name from flag"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.src.Open, tc.src.Hostname = open, hostname
			got, source, err := DiscoverName(tc.src)
			if tc.errMatch != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errMatch) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.errMatch)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || source != tc.source {
				t.Fatalf("got (%q, %q), want (%q, %q)", got, source, tc.want, tc.source)
			}
		})
	}
	t.Run("hostname error", func(t *testing.T) {
		_, _, err := DiscoverName(NameSources{Open: open, Hostname: func() (string, error) { return "", errors.New("boom") }})
		if err == nil || !strings.Contains(err.Error(), "hostname") {
			t.Fatalf("err = %v", err)
		}
	})
}
