package command

import "google.golang.org/protobuf/proto"

// EncodeRequest returns r's bytes, the data of a proposal.
func EncodeRequest(r *Request) ([]byte, error) { return proto.Marshal(r) }

// DecodeRequest decodes b into r, replacing its contents. r keeps no
// reference to b.
func DecodeRequest(b []byte, r *Request) error { return proto.Unmarshal(b, r) }

// EncodeResponse returns r's bytes, the result of an apply.
func EncodeResponse(r *Response) ([]byte, error) { return proto.Marshal(r) }

// DecodeResponse decodes an apply result.
func DecodeResponse(b []byte) (*Response, error) {
	r := new(Response)
	if err := proto.Unmarshal(b, r); err != nil {
		return nil, err
	}
	return r, nil
}
