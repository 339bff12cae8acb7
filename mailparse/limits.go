package mailparse

// Limits bounds the work Parse does on one message. A zero (or negative) field takes its default.
type Limits struct {
	// MaxParts is the most MIME parts Parse reads, counting every part inside the message
	// (multipart containers and leaves, not the message itself). Parts after the limit are
	// dropped with a Warning and Message.PartsTruncated. Default DefaultMaxParts.
	MaxParts int
	// MaxDepth is how deeply multiparts may nest: the message is at depth 0 and the parts of a
	// multipart at depth d are at depth d+1. A multipart whose parts would be deeper than
	// MaxDepth is dropped with a Warning and Message.PartsTruncated. Default DefaultMaxDepth.
	MaxDepth int
	// MaxHeaderBytes caps the message's header section in bytes: a larger one makes Parse fail
	// with ErrHeaderTooLarge. A MIME part whose header block is larger is kept as plain text
	// with a Warning. Default DefaultMaxHeaderBytes.
	MaxHeaderBytes int
}

// Defaults for Limits. Real mail rarely has more than 50 parts or nests more than 6 deep
// (message/rfc822 attachments are not descended into, so forwarding adds no depth).
const (
	// DefaultMaxParts keeps every attachment of any realistic message while bounding the
	// per-part cost, which is paid whatever the part's size: about 7 KiB allocated per part
	// (enmime's header reading, see decode.go), 18 KiB for the parts whose content enmime
	// decodes (charsets like UTF-7, malformed encodings). Measured (BenchmarkParseParts,
	// BenchmarkParseMemParts, 2-core AMD EPYC): a message of a text and 999 attachments of
	// 1 KiB (1.5 MiB) parses in 15-18 ms, allocating 9.4 MiB (13 MiB when enmime decoded
	// every part), with a heap peak of 5-6 MiB above the input and 1.1 MiB held by the
	// Message; 1000 tiny parts take 9 ms and 6.2 MiB. The worst 64 KiB input (1000 parts
	// enmime decodes) allocates 19 MiB.
	DefaultMaxParts = 1000
	// DefaultMaxDepth bounds the O(depth × size) cost of splitting nested multiparts.
	DefaultMaxDepth = 10
	// DefaultMaxHeaderBytes is generous: Postfix's header_size_limit is 100 KiB.
	DefaultMaxHeaderBytes = 256 << 10
)

// Internal caps, each guarding against a cost that is not linear in the input size.
const (
	// maxMediaTypeBytes and maxMediaTypeParams cap a Content-Type or Content-Disposition value
	// before enmime's media-type repair, which is quadratic in the number of parameters. A
	// 200-byte RFC 2231 filename encodes to about 650 bytes in a handful of parameters.
	maxMediaTypeBytes  = 4096
	maxMediaTypeParams = 32
	// maxPartErrors is how many problems enmime keeps per part.
	maxPartErrors = 8
	// maxWarnings caps Message.Warnings; the last entry then says how many were left out.
	maxWarnings = 32
	// maxFilenameBytes is the longest attachment filename (the extension is kept).
	maxFilenameBytes = 200
	// maxExtBytes is the longest suffix treated as a filename extension.
	maxExtBytes = 16
	// maxHTMLToTextBytes caps the HTML that Text is derived from: x/net/html and html2text
	// cost up to about 2 µs and 220 bytes of garbage per input byte (misnested formatting
	// tags). Gmail clips HTML bodies at 102 KiB, so real text fits.
	maxHTMLToTextBytes = 128 << 10
)

func (l Limits) withDefaults() Limits {
	if l.MaxParts <= 0 {
		l.MaxParts = DefaultMaxParts
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return l
}
