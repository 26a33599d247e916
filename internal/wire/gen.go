// Package wire holds concord's own protobuf encodings: transport handshakes,
// proposal envelopes in raft entries and snapshot stream records. The
// generated code is committed; building never needs protoc.
package wire

//go:generate protoc --go_out=. --go_opt=paths=source_relative wire.proto
