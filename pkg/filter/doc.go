// Package filter is ledgerfence's decision: host facts and VM regulations in,
// a verdict per host with a reason out.
//
// It is pure: no I/O, no clock, no mutable state. filterd, the chaincode, the
// host agent's sweep and ledgerctl all call Evaluate, so every part of
// ledgerfence decides the same way. The same package holds the validation and
// normalisation rules for hosts, regulations and subjects, so that every
// boundary (webhook, REST, CLI, chaincode) rejects the same bad input.
package filter
