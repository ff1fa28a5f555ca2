package audit

import (
	"strings"
	"testing"
	"time"
)

func chain(n int) []Entry {
	var out []Entry
	prev := Genesis
	for i := 1; i <= n; i++ {
		e := Entry{Seq: int64(i), At: time.Date(2026, 11, 26, 0, 0, i, 0, time.UTC), Actor: "token:t", Action: "x.y",
			Target: "t", Before: State(nil), After: State(map[string]int{"n": i}), Reason: "r"}
		e.Seal(prev)
		prev = e.Hash
		out = append(out, e)
	}
	return out
}

func verify(es []Entry, headSeq int64, headHash string) []string {
	v := NewVerifier()
	for _, e := range es {
		v.Add(e)
	}
	return v.Finish(headSeq, headHash)
}

func TestVerifier(t *testing.T) {
	es := chain(5)
	head := es[4]
	if p := verify(es, head.Seq, head.Hash); len(p) != 0 {
		t.Fatalf("intact chain: %v", p)
	}
	// Fields cannot be shifted into one another: "ab"+"c" differs from "a"+"bc".
	a, b := es[0], es[0]
	a.Actor, a.Action = "ab", "c"
	b.Actor, b.Action = "a", "bc"
	if a.compute() == b.compute() {
		t.Fatal("length prefixes missing")
	}
	for name, tc := range map[string]struct {
		mutate func([]Entry) []Entry
		want   string
	}{
		"edited":         {func(es []Entry) []Entry { es[2].Reason = "x"; return es }, "entry 3 was edited"},
		"deleted":        {func(es []Entry) []Entry { return append(es[:2:2], es[3:]...) }, "entries 3-3 are missing"},
		"tail deleted":   {func(es []Entry) []Entry { return es[:4] }, "the chain ends at entry 4"},
		"reordered":      {func(es []Entry) []Entry { es[1], es[2] = es[2], es[1]; return es }, "out of order"},
		"rehashed alone": {func(es []Entry) []Entry { es[1].Reason = "x"; es[1].Seal(es[1].Prev); return es }, "does not follow entry 2"},
	} {
		cp := append([]Entry(nil), es...)
		p := verify(tc.mutate(cp), head.Seq, head.Hash)
		if !strings.Contains(strings.Join(p, "\n"), tc.want) {
			t.Errorf("%s: problems %v, want %q", name, p, tc.want)
		}
	}
}

func TestAnchor(t *testing.T) {
	a, err := ParseAnchor("12:" + strings.Repeat("AB", 32))
	if err != nil || a.Seq != 12 || a.Hash != strings.Repeat("ab", 32) || a.String() != "12:"+strings.Repeat("ab", 32) {
		t.Fatalf("ParseAnchor = %+v, %v", a, err)
	}
	for _, bad := range []string{"", "12", "x:" + strings.Repeat("a", 64), "0:" + strings.Repeat("a", 64), "1:abc"} {
		if _, err := ParseAnchor(bad); err == nil {
			t.Errorf("ParseAnchor(%q) accepted", bad)
		}
	}
}
