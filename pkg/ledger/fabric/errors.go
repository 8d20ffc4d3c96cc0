package fabric

import (
	"context"
	"errors"

	"github.com/hyperledger/fabric-gateway/pkg/client"
	"github.com/hyperledger/fabric-protos-go-apiv2/gateway"
	"github.com/hyperledger/fabric-protos-go-apiv2/peer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric/wire"
)

// unavailable is the error of a call that ctx ended.
func unavailable(ctx context.Context, op string, err error) error {
	msg := op + ": the Fabric peer did not answer in time"
	if errors.Is(ctx.Err(), context.Canceled) {
		msg = op + ": cancelled"
	}
	return ledger.Errorf(ledger.ErrUnavailable, errors.Join(ctx.Err(), err), msg)
}

// mapError turns a fabric-gateway error into one of pkg/ledger's sentinels.
// The chaincode's refusals travel in the gRPC status details (one per peer
// that endorsed), not in the status message: they are read from there.
func mapError(ctx context.Context, op string, err error) error {
	var ce *client.CommitError
	if errors.As(err, &ce) {
		switch ce.Code {
		case peer.TxValidationCode_ENDORSEMENT_POLICY_FAILURE:
			return ledger.Errorf(ledger.ErrForbidden, err,
				op+": not committed: the transaction was not endorsed by the organisations the endorsement policy requires")
		case peer.TxValidationCode_MVCC_READ_CONFLICT, peer.TxValidationCode_PHANTOM_READ_CONFLICT:
			return ledger.Errorf(ledger.ErrUnavailable, err, op+": not committed: a concurrent write changed the record; retry")
		}
		return ledger.Errorf(ledger.ErrUnavailable, err, op+": not committed: "+ce.Code.String())
	}
	st, ok := status.FromError(err)
	if ok {
		if we := refusal(st); we != nil {
			return ledger.Errorf(we.Kind(), err, we.Msg)
		}
	}
	if ctx.Err() != nil {
		return unavailable(ctx, op, err)
	}
	if !ok {
		return ledger.Errorf(ledger.ErrUnavailable, err, op+": the Fabric peer could not be used")
	}
	switch st.Code() {
	case codes.PermissionDenied:
		return ledger.Errorf(ledger.ErrForbidden, err, op+": the peer refused this identity")
	case codes.Unavailable:
		return ledger.Errorf(ledger.ErrUnavailable, err, op+": the Fabric peer is unreachable")
	case codes.DeadlineExceeded:
		// the call's deadline, seen by the peer before the caller's timer fired
		return ledger.Errorf(ledger.ErrUnavailable, errors.Join(context.DeadlineExceeded, err), op+": the Fabric network did not answer in time")
	}
	return ledger.Errorf(ledger.ErrUnavailable, err, op+": the Fabric network could not serve the request ("+st.Code().String()+")")
}

// refusal finds the chaincode's refusal in a status: first in the details
// that the gateway attaches per endorsing peer, then in the message.
func refusal(st *status.Status) *wire.Error {
	for _, d := range st.Details() {
		if ed, ok := d.(*gateway.ErrorDetail); ok {
			if we, ok := wire.ParseError(ed.GetMessage()); ok {
				return we
			}
		}
	}
	if we, ok := wire.ParseError(st.Message()); ok {
		return we
	}
	return nil
}
