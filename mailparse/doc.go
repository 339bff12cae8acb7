// Package mailparse turns raw RFC 5322 messages into a parsed Message (Parse) and builds RFC 5322
// messages from the JSON inbound form (Build).
//
// Parse never fails on malformed MIME: it keeps what it can read and reports what it tolerated in
// Message.Warnings. It fails only when the input is not a mail message at all (ErrNotMessage) or
// when the header section is larger than Limits.MaxHeaderBytes (ErrHeaderTooLarge). Work is bounded
// on hostile input: Limits caps the number of MIME parts and their nesting depth, and the other
// caps live in limits.go.
//
// MIME decoding (header folding, media types, transfer encodings, charsets, RFC 2047/2231 words,
// address lists) is done by github.com/jhillyerd/enmime/v2. This package splits multiparts itself
// (split.go) so that enmime only ever sees single parts: enmime's own multipart reader has no part
// or depth limit and costs O(depth × size) time and about 8 KiB per part. It also decodes the
// content of the parts in the usual encodings and charsets itself (decode.go), with enmime's
// semantics, into buffers of the decoded size: enmime's io.ReadAll per decoding stage costs 2 to
// 5 times the content. Decoded content is then used as is (text bodies become the strings of the
// Message without a copy), so a message costs little more than its decoded parts.
//
// Parts left out because of Limits.MaxParts or MaxDepth are reported in Message.PartsTruncated
// (and a Warning); the raw message still holds them.
//
// Concurrency: Parse, Build and NewMessageID keep no mutable shared state and are safe for
// concurrent use. A returned Message shares no memory with the raw input.
package mailparse
