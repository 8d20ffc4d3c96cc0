// Command ledgerfence-cc serves ledgerfence's chaincode as a service (CCaaS):
// the peer connects to it at CHAINCODE_SERVER_ADDRESS.
//
// Environment:
//
//	CHAINCODE_ID              the chaincode package id (label:sha256), required
//	CHAINCODE_SERVER_ADDRESS  host:port to listen on, required
//	CHAINCODE_TLS_KEY_FILE    TLS key, PEM (TLS is off unless key and cert are given)
//	CHAINCODE_TLS_CERT_FILE   TLS certificate, PEM
//	CHAINCODE_TLS_CLIENT_CA_FILE  CA that peers' client certificates must chain to (optional)
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"

	"github.com/ledgerfence/ledgerfence/chaincode"
)

type config struct {
	id, address            string
	tlsKey, tlsCert, tlsCA string
}

func configFromEnv() (config, error) {
	c := config{
		id:      os.Getenv("CHAINCODE_ID"),
		address: os.Getenv("CHAINCODE_SERVER_ADDRESS"),
		tlsKey:  os.Getenv("CHAINCODE_TLS_KEY_FILE"),
		tlsCert: os.Getenv("CHAINCODE_TLS_CERT_FILE"),
		tlsCA:   os.Getenv("CHAINCODE_TLS_CLIENT_CA_FILE"),
	}
	switch {
	case c.id == "":
		return c, errors.New("CHAINCODE_ID is required (the package id, label:sha256)")
	case c.address == "":
		return c, errors.New("CHAINCODE_SERVER_ADDRESS is required (host:port)")
	case (c.tlsKey == "") != (c.tlsCert == ""):
		return c, errors.New("CHAINCODE_TLS_KEY_FILE and CHAINCODE_TLS_CERT_FILE go together")
	}
	return c, nil
}

func run(ctx context.Context, c config) error {
	cc, err := chaincode.New()
	if err != nil {
		return fmt.Errorf("chaincode: %w", err)
	}
	srv := &shim.ChaincodeServer{CCID: c.id, Address: c.address, CC: cc, TLSProps: shim.TLSProperties{Disabled: true}}
	if c.tlsKey != "" {
		srv.TLSProps.Disabled = false
		if srv.TLSProps.Key, err = os.ReadFile(c.tlsKey); err != nil {
			return err
		}
		if srv.TLSProps.Cert, err = os.ReadFile(c.tlsCert); err != nil {
			return err
		}
		if c.tlsCA != "" {
			if srv.TLSProps.ClientCACerts, err = os.ReadFile(c.tlsCA); err != nil {
				return err
			}
		}
	}
	done := make(chan error, 1)
	go func() { done <- srv.Start() }()
	select {
	case err := <-done:
		return fmt.Errorf("chaincode server: %w", err)
	case <-ctx.Done():
		return nil
	}
}

func main() {
	c, err := configFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ledgerfence-cc:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, c)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ledgerfence-cc:", err)
		os.Exit(1)
	}
}
