package sparkline

import "testing"

func TestRender(t *testing.T) {
	for _, tc := range []struct {
		vals  []float64
		width int
		top   float64
		want  string
	}{
		{[]float64{0, 50, 100}, 5, 100, "  ▁▄█"},
		{[]float64{1, 2, 3, 4}, 2, 0, "▆█"},
		{nil, 3, 10, "   "},
		{[]float64{200}, 1, 100, "█"},
	} {
		if got := Render(tc.vals, tc.width, tc.top); got != tc.want {
			t.Errorf("Render(%v, %d, %v) = %q, want %q", tc.vals, tc.width, tc.top, got, tc.want)
		}
	}
}

func TestRing(t *testing.T) {
	r := NewRing(3)
	for i := range 5 {
		r.Add(float64(i))
	}
	if v := r.Values(); len(v) != 3 || v[0] != 2 || r.Last() != 4 {
		t.Errorf("ring = %v", v)
	}
}
