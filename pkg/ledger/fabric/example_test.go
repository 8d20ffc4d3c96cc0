package fabric_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric"
)

// A host agent registers its host with its own Fabric identity.
func ExampleConnect() {
	l, err := fabric.Connect(fabric.Config{
		PeerEndpoint: "127.0.0.1:7051",
		TLSCAFile:    "/etc/ledgerfence/peer-tls-ca.pem",
		ServerName:   "peer0.org1.example.com",
		MSPID:        "Org1MSP",
		CertFile:     "/etc/ledgerfence/hostagent/cert.pem",
		KeyFile:      "/etc/ledgerfence/hostagent/key.pem",
	}, fabric.WithSubmitTimeout(10*time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()

	rec, changed, err := l.PutHost(context.Background(), filter.Host{Name: "hm1", Country: "JP", Organizations: []string{"CompanyA"}})
	switch {
	case errors.Is(err, ledger.ErrForbidden), errors.Is(err, ledger.ErrInvalid):
		fmt.Println("refused:", err) // do not retry
	case err != nil:
		fmt.Println("not written, retry later:", err)
	default:
		fmt.Println("committed in", rec.TxID, "changed:", changed)
	}
}

// filterd's cache follows the ledger's changes and resumes where it stopped.
func ExampleLedger_Watch() {
	l, err := fabric.Connect(fabric.Config{
		PeerEndpoint: "127.0.0.1:7051",
		TLSCAFile:    "/etc/ledgerfence/peer-tls-ca.pem",
		MSPID:        "Org1MSP",
		CertFile:     "/etc/ledgerfence/filterd/cert.pem",
		KeyFile:      "/etc/ledgerfence/filterd/key.pem",
	}, fabric.WithCheckpointFile("/var/lib/ledgerfence/events.checkpoint"), fabric.WithReconnect(time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	height, err := l.Height(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	events, err := l.Watch(ctx, height)
	if err != nil {
		fmt.Println(err)
		return
	}
	for ev := range events {
		fmt.Println(ev.Block, ev.Kind, ev.Key, ev.Op)
	}
}
