package apitest

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// BigDocRecordBytes is the size of one record of a BigDoc, comma included.
const BigDocRecordBytes = 1024

// BigDoc serves one JSON document of about size bytes, generated as it
// is written (the server holds one record at a time):
//
//	{"meta":{"generated_by":"apitest"},"items":[{"id":1,"name":"item-1","qty":1,"pad":"…"},…],"count":N}
//
// Record i has qty i%1000 and a pad that brings it to BigDocRecordBytes.
// BigDocCount says how many records a size holds, BigDocQtySum their qty
// sum, so that a test can check exactly what landed.
func BigDoc(size int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := BigDocCount(size)
		w.Header().Set("Content-Type", "application/json")
		bw := bufio.NewWriterSize(w, 256<<10)
		bw.WriteString(`{"meta":{"generated_by":"apitest"},"items":[`)
		var buf []byte
		for i := int64(1); i <= n; i++ {
			if i > 1 {
				bw.WriteByte(',')
			}
			buf = BigDocRecord(buf[:0], i)
			if _, err := bw.Write(buf); err != nil {
				return // the client went away
			}
		}
		fmt.Fprintf(bw, `],"count":%d}`, n)
		bw.Flush()
	})
}

// BigDocCount is the number of records of a BigDoc of size bytes.
func BigDocCount(size int64) int64 { return max(1, size/BigDocRecordBytes) }

// BigDocQtySum is the sum of qty over the records of a BigDoc.
func BigDocQtySum(size int64) int64 {
	var s int64
	for i := int64(1); i <= BigDocCount(size); i++ {
		s += i % 1000
	}
	return s
}

var pad = strings.Repeat("x", BigDocRecordBytes)

// BigDocRecord appends record i (BigDocRecordBytes-1 bytes) to buf.
func BigDocRecord(buf []byte, i int64) []byte {
	start := len(buf)
	buf = append(buf, `{"id":`...)
	buf = strconv.AppendInt(buf, i, 10)
	buf = append(buf, `,"name":"item-`...)
	buf = strconv.AppendInt(buf, i, 10)
	buf = append(buf, `","qty":`...)
	buf = strconv.AppendInt(buf, i%1000, 10)
	buf = append(buf, `,"pad":"`...)
	n := BigDocRecordBytes - 1 - (len(buf) - start) - 2
	buf = append(buf, pad[:max(0, n)]...)
	return append(buf, `"}`...)
}
