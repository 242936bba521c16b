package progress

import (
	"context"
	"testing"
	"time"
)

func TestJournalFollowAndList(t *testing.T) {
	dir := t.TempDir()
	j, err := Create(dir, "build -t app:dev .")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch := Follow(ctx, dir, j.Job(), 10*time.Millisecond)
	if e := <-ch; e.Kind != KindStart || e.Title != "build -t app:dev ." {
		t.Fatalf("first event %+v", e)
	}
	j.Emit(Event{Kind: KindLog, Step: 1, Line: "hello"})
	if e := <-ch; e.Kind != KindLog || e.Line != "hello" || e.Job != j.Job() {
		t.Fatalf("log event %+v", e)
	}
	sums, err := List(dir)
	if err != nil || len(sums) != 1 || sums[0].State != "running" {
		t.Fatalf("List while running: %+v %v", sums, err)
	}
	j.Emit(Event{Kind: KindDone, Digest: "sha256:abc"})
	j.Close()
	if e := <-ch; e.Kind != KindDone {
		t.Fatalf("done event %+v", e)
	}
	if _, ok := <-ch; ok {
		t.Fatal("Follow did not close after the final event")
	}
	sums, _ = List(dir)
	if sums[0].State != "done" || sums[0].Digest != "sha256:abc" || sums[0].Events != 3 {
		t.Fatalf("List after done: %+v", sums)
	}
}
