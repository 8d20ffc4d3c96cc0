package chaincode

import (
	"encoding/base64"

	"github.com/ledgerfence/ledgerfence/pkg/ledger/access"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric/wire"
)

// caller reads the submitter's MSP, identity ("x509::<subject DN>::<issuer
// DN>", unique within the MSP) and ledgerfence attributes, as the access
// rules (package access) see them.
func caller(ctx Ctx) (access.Identity, error) {
	ci := ctx.GetClientIdentity()
	if ci == nil {
		return access.Identity{}, refuse(wire.CodeForbid, "the submitter's identity cannot be read")
	}
	msp, err := ci.GetMSPID()
	if err != nil || msp == "" {
		return access.Identity{}, refuse(wire.CodeForbid, "the submitter's MSP cannot be read")
	}
	raw, err := ci.GetID()
	if err != nil {
		return access.Identity{}, refuse(wire.CodeForbid, "only X.509 identities may write")
	}
	id := raw
	if dec, err := base64.StdEncoding.DecodeString(raw); err == nil {
		id = string(dec)
	}
	who := access.Identity{MSP: msp, ID: id}
	if who.Role, _, err = ci.GetAttributeValue(wire.AttrRole); err != nil {
		return access.Identity{}, refuse(wire.CodeForbid, "the submitter's attributes cannot be read")
	}
	if who.Host, _, err = ci.GetAttributeValue(wire.AttrHost); err != nil {
		return access.Identity{}, refuse(wire.CodeForbid, "the submitter's attributes cannot be read")
	}
	return who, nil
}
