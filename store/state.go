package store

import (
	"encoding/binary"
	"fmt"
)

// The stored form of EventState: a version byte, then the fields in order
// as uvarints (integers) or length-prefixed strings. It is read and written
// on every attempt, listing and replay, so it is binary rather than JSON.
const stateFormat = 3 // 1: without LastAckAt; 2: without the flags' PreferWebhook bit

// The last byte holds flags (formats 1 and 2: only AwaitingAck, as 0 or 1).
const (
	flagAwaitingAck   = 1 << 0
	flagPreferWebhook = 1 << 1
)

func encodeState(st EventState) []byte {
	b := make([]byte, 0, 16+len(st.InboxID)+len(st.Type)+len(st.Status)+len(st.DeliveredVia)+5*8)
	b = append(b, stateFormat)
	for _, s := range []string{st.InboxID, st.Type, st.Status, st.DeliveredVia} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, n := range []int64{int64(st.Attempts), int64(st.CycleStart), st.NextAt, st.LastAt, st.AckedAt, st.LastAckAt} {
		b = binary.AppendVarint(b, n)
	}
	var flags byte
	if st.AwaitingAck {
		flags |= flagAwaitingAck
	}
	if st.PreferWebhook {
		flags |= flagPreferWebhook
	}
	return append(b, flags)
}

func decodeState(b []byte) (EventState, error) {
	var st EventState
	if len(b) == 0 || b[0] < 1 || b[0] > stateFormat {
		return st, fmt.Errorf("cannot decode event state: unknown format")
	}
	format := b[0]
	b = b[1:]
	var strs [4]string
	for i := range strs {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return st, fmt.Errorf("cannot decode event state: truncated")
		}
		strs[i] = string(b[n : n+int(l)])
		b = b[n+int(l):]
	}
	var nums [6]int64
	count := len(nums)
	if format == 1 {
		count = 5
	}
	for i := range nums[:count] {
		v, n := binary.Varint(b)
		if n <= 0 {
			return st, fmt.Errorf("cannot decode event state: truncated")
		}
		nums[i] = v
		b = b[n:]
	}
	if len(b) != 1 {
		return st, fmt.Errorf("cannot decode event state: trailing bytes")
	}
	st.InboxID, st.Type, st.Status, st.DeliveredVia = strs[0], strs[1], strs[2], strs[3]
	st.Attempts, st.CycleStart = int(nums[0]), int(nums[1])
	st.NextAt, st.LastAt, st.AckedAt, st.LastAckAt = nums[2], nums[3], nums[4], nums[5]
	st.AwaitingAck = b[0]&flagAwaitingAck != 0
	st.PreferWebhook = b[0]&flagPreferWebhook != 0
	return st, nil
}
