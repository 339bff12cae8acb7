package store

import (
	"encoding/binary"
)

// Key prefixes, one per record kind. Ids never contain '/', so '/' is a safe
// separator; prefix scans use the separator-terminated prefix.
const (
	pAccount       = "a/"  // a/<accID> -> Account
	pAccountKeys   = "ak/" // ak/<accID>/<keyID> -> nil (keys of an account)
	pKey           = "k/"  // k/<keyID> -> APIKey
	pKeyHash       = "kh/" // kh/<sha256 of key> -> keyID
	pInbox         = "i/"  // i/<inboxID> -> Inbox
	pAccountInbox  = "ai/" // ai/<accID>/<inboxID> -> nil
	pAddress       = "ix/" // ix/<address> -> inboxID
	pWebhook       = "w/"  // w/<accID> -> Webhook (account default)
	pMessage       = "m/"  // m/<msgID> -> Message
	pRaw           = "mr/" // mr/<msgID> -> raw RFC 5322 bytes
	pAttachment    = "mf/" // mf/<msgID>/<filename> -> bytes
	pInboxMessage  = "mi/" // mi/<inboxID>/<msgID> -> threadID (nil before threads were indexed)
	pThread        = "th/" // th/<inboxID>/<rfcMessageID> -> threadID
	pThreadInfo    = "t/"  // t/<threadID> -> threadRecord (written by its first message)
	pThreadMessage = "tm/" // tm/<threadID>/<msgID> -> nil (a thread's messages)
	pThreadRead    = "tr/" // tr/<inboxID>/<threadID> -> uvarint message count when marked read
	pIdempotency   = "ik/" // ik/<inboxID>/<hex sha256 of key> -> IdempotentReply
	pEvent         = "e/"  // e/<evtID> -> encoded Event (immutable)
	pEventState    = "es/" // es/<accID>/<evtID> -> EventState
	pAttempt       = "ea/" // ea/<evtID>/<n uint32 BE> -> Attempt
	pDue           = "d/"  // d/<ms uint64 BE><evtID> -> accID
	pMeta          = "z/"  // z/<name> -> store metadata
)

func key(parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += len(p) + 1
	}
	b := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			b = append(b, '/')
		}
		b = append(b, p...)
	}
	return b
}

// prefixKey returns the scan prefix "<parts joined by />/".
func prefixKey(parts ...string) []byte {
	return append(key(parts...), '/')
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}

func attemptKey(evtID string, n int) []byte {
	k := make([]byte, 0, len(pAttempt)+len(evtID)+5)
	k = append(k, pAttempt...)
	k = append(k, evtID...)
	k = append(k, '/')
	return binary.BigEndian.AppendUint32(k, uint32(n))
}

// DueKey is the due-index key of an event whose next attempt is at atMs
// (Unix milliseconds). Keys sort by time, then by event id.
func dueKey(atMs int64, evtID string) []byte {
	k := make([]byte, 0, len(pDue)+8+len(evtID))
	k = append(k, pDue...)
	k = binary.BigEndian.AppendUint64(k, uint64(atMs))
	return append(k, evtID...)
}

func parseDueKey(k []byte) (atMs int64, evtID string, ok bool) {
	if len(k) < len(pDue)+8 || string(k[:len(pDue)]) != pDue {
		return 0, "", false
	}
	at := binary.BigEndian.Uint64(k[len(pDue):])
	return int64(at), string(k[len(pDue)+8:]), true
}
