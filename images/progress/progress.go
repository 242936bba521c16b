// Package progress is the typed event stream that image pulls and
// Dockerfile builds emit, and its on-disk journal.
//
// Every pull or build started by any machinetop process writes its events,
// one JSON object a line, to DataDir/builds/<id>.jsonl (the journal), so a
// dashboard in another process can list builds and follow their logs live.
// In-process consumers (the CLI's tty/plain renderers) receive the same
// events through a channel or callback.
package progress

import "time"

// Kind says what an Event reports.
type Kind string

// Event kinds.
const (
	KindStart      Kind = "start"       // the build or pull began; Title set
	KindStepStart  Kind = "step-start"  // a step began; Step, Total, Title set
	KindStepCached Kind = "step-cached" // a step was satisfied from cache
	KindStepDone   Kind = "step-done"   // a step finished; Duration set
	KindStepFailed Kind = "step-failed" // a step failed; Error set
	KindLog        Kind = "log"         // one line of output of step Step; Line set
	KindBytes      Kind = "bytes"       // layer transfer progress; Layer, Done, Size set
	KindDone       Kind = "done"        // the whole job succeeded; Digest, Tags set
	KindError      Kind = "error"       // the whole job failed; Error set
)

// Event is one entry of the stream. Fields not relevant to Kind are zero.
type Event struct {
	Time time.Time `json:"time"`
	Kind Kind      `json:"kind"`
	// Job identifies the build or pull (the journal's file name without
	// .jsonl).
	Job string `json:"job"`
	// Step is the 1-based step number and Total the number of steps, for
	// builds; Title is the step's instruction ("RUN apt-get update") or the
	// job's description ("build -t app:dev .", "pull debian:bookworm").
	Step  int    `json:"step,omitempty"`
	Total int    `json:"total,omitempty"`
	Title string `json:"title,omitempty"`
	// Line is one line of a step's output, without the newline.
	Line string `json:"line,omitempty"`
	// Layer is a layer digest; Done and Size are bytes transferred and the
	// layer's size (Size 0 when unknown).
	Layer string `json:"layer,omitempty"`
	Done  int64  `json:"done,omitempty"`
	Size  int64  `json:"size,omitempty"`
	// Duration of a finished step, in seconds.
	Duration float64 `json:"duration,omitempty"`
	// Error describes a failure.
	Error string `json:"error,omitempty"`
	// Digest and Tags of the finished image.
	Digest string   `json:"digest,omitempty"`
	Tags   []string `json:"tags,omitempty"`
}
