// Package build builds OCI images from Dockerfiles (Dockerfile reference,
// docs.docker.com/reference/dockerfile) into the local image store.
//
// The Dockerfile is parsed with BuildKit's parser and instructions
// packages. Every instruction after FROM is a step whose result, an image,
// is cached in the store under a key derived from the parent image's
// digest, the expanded instruction and its inputs (file contents for
// COPY/ADD, build arguments for RUN), so an unchanged rebuild runs nothing.
// COPY, ADD and the metadata instructions are carried out on the host;
// RUN is delegated to a Runner, which executes the command over the
// parent's root filesystem (in a builder machine) and returns its
// filesystem changes as an OCI layer (image-spec layer.md, whiteouts for
// deletions). Progress is reported as progress.Event values.
package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"

	"github.com/machinetop/machinetop/images"
	"github.com/machinetop/machinetop/images/progress"
)

// RunRequest is one RUN instruction for a Runner.
type RunRequest struct {
	// Argv is the command: the shell form already wrapped in the stage's
	// SHELL (default ["/bin/sh", "-c"]).
	Argv []string
	// Env is the environment, KEY=VALUE: the image's ENV followed by the
	// build arguments in scope that ENV does not override.
	Env []string
	// Dir is the working directory (absolute); the runner creates it if
	// missing.
	Dir string
	// User is USER's value: "name", "uid", "name:group" or "uid:gid";
	// empty means root.
	User string
}

// Runner executes RUN steps.
type Runner interface {
	// Run executes req over the root filesystem of base and writes the
	// changes it made to the filesystem to diff as an uncompressed OCI
	// layer tar (deleted paths as ".wh." whiteout files, replaced
	// directories with ".wh..wh..opq"). The command's output goes to
	// output. A command that exits non-zero yields an *ExitError; diff
	// content is then discarded by the caller.
	Run(ctx context.Context, base v1.Image, req RunRequest, output io.Writer, diff io.Writer) error
}

// ExitError reports a RUN command that exited with a non-zero status.
type ExitError struct {
	// Code is the exit status; a command killed by a signal has 128+N.
	Code int
}

// Error returns "exit status N".
func (e *ExitError) Error() string { return "exit status " + strconv.Itoa(e.Code) }

// Options are the parameters of Build.
type Options struct {
	// Store receives the result and holds the step cache.
	Store *images.Store
	// ContextDir is the build context directory.
	ContextDir string
	// Dockerfile is the Dockerfile's path; empty means
	// ContextDir/Dockerfile.
	Dockerfile string
	// Tags are the NAME[:TAG] references the result is stored under; with
	// none the result is kept only as a cache entry (its digest is
	// returned).
	Tags []string
	// BuildArgs are --build-arg values, overriding ARG defaults.
	BuildArgs map[string]string
	// Target names the stage to build; empty means the last.
	Target string
	// NoCache runs every step even when a cached result exists (results
	// are still stored for later builds).
	NoCache bool
	// Runner executes RUN steps; nil makes a RUN step fail.
	Runner Runner
	// Pull, if set, is called for a FROM image missing from the store; it
	// should pull ref into the store.
	Pull func(ctx context.Context, ref string) error
	// Emit receives progress events: KindStepStart, KindStepCached,
	// KindStepDone, KindStepFailed and KindLog (RUN output, Step set).
	Emit func(progress.Event)
	// TempDir holds scratch files (layers being written, flattened
	// sources); empty means os.TempDir().
	TempDir string
}

// Result describes a finished build.
type Result struct {
	// Digest is the manifest digest of the built image.
	Digest v1.Hash
	// Tags are the references it was stored under.
	Tags []string
	// Steps is the number of steps; Cached how many came from the cache.
	Steps, Cached int
}

// Error is a build failure tied to a place in the Dockerfile.
type Error struct {
	// File is the Dockerfile's name as given; Line its 1-based line (0
	// when unknown).
	File string
	Line int
	// Step is the failed step (0 when the Dockerfile did not parse) and
	// Instruction its text.
	Step        int
	Instruction string
	// Output holds the last lines a failed RUN printed.
	Output []string
	Err    error
}

// Error names the Dockerfile line, step and instruction, then the cause.
func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Instruction != "" {
		return fmt.Sprintf("%s: %s: %v", loc, e.Instruction, e.Err)
	}
	return fmt.Sprintf("%s: %v", loc, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// stage is the state of one stage while it is built.
type stage struct {
	index int
	def   instructions.Stage
	img   v1.Image
	cfg   *v1.ConfigFile
	args  []string // KEY=VALUE of ARGs in scope, in declaration order
	// cmdSet is true once CMD was given in this stage (ENTRYPOINT then
	// keeps it).
	cmdSet bool
}

type builder struct {
	opts     Options
	file     string
	lex      *shell.Lex
	metaArgs []string
	stages   []instructions.Stage
	built    map[int]*stage
	step     int
	total    int
	cached   int
	ctxSrc   *source
	sources  map[v1.Hash]*source
	tmp      string
	emit     func(progress.Event)
}

// Build builds the Dockerfile in opts and stores the result under each of
// opts.Tags (nothing is tagged when any step fails). Errors are *Error
// values naming the Dockerfile line: syntax errors, unknown instructions,
// unknown stages, missing COPY sources, FROM images that are neither in
// the store nor pullable, RUN commands that fail (an *ExitError inside),
// or ctx's error when cancelled; results of finished steps stay cached.
func Build(ctx context.Context, opts Options) (Result, error) {
	b := &builder{opts: opts, built: map[int]*stage{}, sources: map[v1.Hash]*source{}}
	b.emit = opts.Emit
	if b.emit == nil {
		b.emit = func(progress.Event) {}
	}
	if opts.Dockerfile == "" {
		opts.Dockerfile = filepath.Join(opts.ContextDir, "Dockerfile")
		b.opts.Dockerfile = opts.Dockerfile
	}
	b.file = filepath.Base(opts.Dockerfile)
	tmp, err := os.MkdirTemp(opts.TempDir, "machinetop-build-*")
	if err != nil {
		return Result{}, err
	}
	b.tmp = tmp
	defer os.RemoveAll(tmp)
	defer func() {
		for _, s := range b.sources {
			s.close()
		}
	}()
	if err := b.parse(); err != nil {
		return Result{}, err
	}
	if fi, err := os.Stat(opts.ContextDir); err != nil || !fi.IsDir() {
		return Result{}, fmt.Errorf("build context %s is not a directory", opts.ContextDir)
	}
	for _, t := range opts.Tags {
		if _, _, err := images.ParseRef(t); err != nil {
			return Result{}, fmt.Errorf("-t %s: %w", t, err)
		}
	}
	target := len(b.stages) - 1
	if opts.Target != "" {
		target = -1
		for i, s := range b.stages {
			if strings.EqualFold(s.Name, opts.Target) {
				target = i
			}
		}
		if target < 0 {
			return Result{}, fmt.Errorf("--target %s: no stage of that name in %s", opts.Target, b.file)
		}
	}
	needed, err := b.plan(target)
	if err != nil {
		return Result{}, err
	}
	for _, i := range needed {
		b.total++
		for _, c := range b.stages[i].Commands {
			if _, isArg := c.(*instructions.ArgCommand); !isArg {
				b.total++
			}
		}
	}
	for _, i := range needed {
		if err := b.buildStage(ctx, i); err != nil {
			return Result{}, err
		}
	}
	final := b.built[target]
	d, err := final.img.Digest()
	if err != nil {
		return Result{}, err
	}
	res := Result{Digest: d, Steps: b.total, Cached: b.cached}
	for _, t := range opts.Tags {
		im, err := opts.Store.Put(ctx, final.img, t)
		if err != nil {
			return Result{}, fmt.Errorf("tagging %s: %w", t, err)
		}
		res.Tags = append(res.Tags, im.Ref())
	}
	return res, nil
}

// parse reads and parses the Dockerfile.
func (b *builder) parse() error {
	raw, err := os.ReadFile(b.opts.Dockerfile)
	if err != nil {
		return fmt.Errorf("reading the Dockerfile: %w", err)
	}
	res, err := parser.Parse(bytes.NewReader(raw))
	if err != nil {
		return b.located(err)
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return b.located(err)
	}
	if len(stages) == 0 {
		return &Error{File: b.file, Err: errors.New("no FROM instruction")}
	}
	b.stages = stages
	b.lex = shell.NewLex(res.EscapeToken)
	// ARGs before the first FROM are in scope for FROM lines only.
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			v, ok := b.opts.BuildArgs[kv.Key]
			if !ok && kv.Value != nil {
				v, _, err = b.lex.ProcessWord(*kv.Value, shell.EnvsFromSlice(b.metaArgs))
				if err != nil {
					return &Error{File: b.file, Line: line(a.Location()), Err: err}
				}
				ok = true
			}
			if ok {
				b.metaArgs = setEnv(b.metaArgs, kv.Key, v)
			}
		}
	}
	return nil
}

// located turns a BuildKit parse error into an *Error with its line.
func (b *builder) located(err error) error {
	e := &Error{File: b.file, Err: err}
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
		e.Line = le.Locations[0][0].Start.Line
		e.Err = errors.Unwrap(le)
		if e.Err == nil {
			e.Err = err
		}
	}
	var ue *instructions.UnknownInstructionError
	if errors.As(err, &ue) {
		e.Line = ue.Line
	}
	// Drop BuildKit's stack annotations from the message.
	e.Err = errors.New(firstLine(e.Err.Error()))
	return e
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func line(r []parser.Range) int {
	if len(r) == 0 {
		return 0
	}
	return r[0].Start.Line
}

// stageIndex finds a stage by name or number, among the stages before
// limit.
func (b *builder) stageIndex(ref string, limit int) (int, bool) {
	for i := 0; i < limit && i < len(b.stages); i++ {
		if b.stages[i].Name != "" && strings.EqualFold(b.stages[i].Name, ref) {
			return i, true
		}
	}
	if n, err := strconv.Atoi(ref); err == nil && n >= 0 && n < limit {
		return n, true
	}
	return 0, false
}

// plan returns the stages target depends on, and target, in order.
func (b *builder) plan(target int) ([]int, error) {
	need := map[int]bool{}
	var visit func(i int) error
	visit = func(i int) error {
		if need[i] {
			return nil
		}
		need[i] = true
		s := b.stages[i]
		base, _, _ := b.lex.ProcessWord(s.BaseName, shell.EnvsFromSlice(b.metaArgs))
		if j, ok := b.stageIndex(base, i); ok {
			if err := visit(j); err != nil {
				return err
			}
		}
		for _, c := range s.Commands {
			if cp, ok := c.(*instructions.CopyCommand); ok && cp.From != "" {
				if j, ok := b.stageIndex(cp.From, i); ok {
					if err := visit(j); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	if err := visit(target); err != nil {
		return nil, err
	}
	var out []int
	for i := range b.stages {
		if need[i] {
			out = append(out, i)
		}
	}
	return out, nil
}

// buildStage runs stage i's FROM and its instructions.
func (b *builder) buildStage(ctx context.Context, i int) error {
	def := b.stages[i]
	st := &stage{index: i, def: def}
	b.step++
	title := "FROM " + def.BaseName
	if def.Name != "" {
		title += " AS " + def.Name
	}
	fail := func(err error) error {
		b.emit(progress.Event{Kind: progress.KindStepFailed, Step: b.step, Error: err.Error()})
		return &Error{File: b.file, Line: line(def.Location), Step: b.step, Instruction: title, Err: err}
	}
	b.emit(progress.Event{Kind: progress.KindStepStart, Step: b.step, Total: b.total, Title: title})
	start := time.Now()
	base, _, err := b.lex.ProcessWord(def.BaseName, shell.EnvsFromSlice(b.metaArgs))
	if err != nil {
		return fail(err)
	}
	pulled := false
	switch j, isStage := b.stageIndex(base, i); {
	case isStage:
		st.img = b.built[j].img
	case base == "scratch":
		st.img, err = scratch()
	default:
		st.img, pulled, err = b.fromImage(ctx, base)
	}
	if err != nil {
		return fail(err)
	}
	if st.img, err = asOCI(st.img); err != nil {
		return fail(err)
	}
	if st.cfg, err = st.img.ConfigFile(); err != nil {
		return fail(err)
	}
	st.cfg = st.cfg.DeepCopy()
	if pulled {
		b.emit(progress.Event{Kind: progress.KindStepDone, Step: b.step, Duration: time.Since(start).Seconds()})
	} else {
		b.cached++
		b.emit(progress.Event{Kind: progress.KindStepCached, Step: b.step})
	}
	b.built[i] = st
	for _, c := range def.Commands {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := b.command(ctx, st, c); err != nil {
			return err
		}
	}
	return nil
}

// fromImage resolves a FROM reference in the store, pulling it if missing.
func (b *builder) fromImage(ctx context.Context, ref string) (v1.Image, bool, error) {
	_, img, err := b.opts.Store.Resolve(ref)
	if err == nil {
		return img, false, nil
	}
	if !errors.Is(err, images.ErrNotFound) || b.opts.Pull == nil || !images.LooksPullable(ref) {
		if errors.Is(err, images.ErrNotFound) {
			return nil, false, fmt.Errorf("image %q is not in the local store and cannot be pulled; import or pull it first", ref)
		}
		return nil, false, err
	}
	if perr := b.opts.Pull(ctx, ref); perr != nil {
		return nil, false, fmt.Errorf("image %q is not in the local store, and pulling it failed: %w", ref, perr)
	}
	if _, img, err = b.opts.Store.Resolve(ref); err != nil {
		r, _ := images.NormalizeRemote(ref, false)
		local, _ := images.LocalName(r)
		_, img, err = b.opts.Store.Resolve(local)
	}
	return img, true, err
}

// scratch is the empty image for FROM scratch, for the host platform.
func scratch() (v1.Image, error) {
	p := images.HostPlatform()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	return mutate.ConfigFile(img, &v1.ConfigFile{
		OS: p.OS, Architecture: p.Architecture, Variant: p.Variant,
		RootFS: v1.RootFS{Type: "layers"},
		Config: v1.Config{Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
	})
}

// asOCI makes sure new manifests are OCI ones (image-spec manifest.md),
// whatever the base used.
func asOCI(img v1.Image) (v1.Image, error) {
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	if mt == types.OCIManifestSchema1 {
		return img, nil
	}
	return mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON), nil
}

// env returns the expansion environment of st: its ARGs, then ENV (ENV
// wins over an ARG of the same name).
func (st *stage) env() shell.EnvGetter {
	return shell.EnvsFromSlice(append(slices.Clone(st.args), st.cfg.Config.Env...))
}

// runEnv is the environment of a RUN: ENV plus ARGs that ENV lacks.
func (st *stage) runEnv() []string {
	env := slices.Clone(st.cfg.Config.Env)
	for _, a := range st.args {
		k, _, _ := strings.Cut(a, "=")
		if getEnv(env, k) == nil {
			env = append(env, a)
		}
	}
	return env
}

func getEnv(env []string, k string) *string {
	for _, e := range env {
		if ek, v, _ := strings.Cut(e, "="); ek == k {
			return &v
		}
	}
	return nil
}

func setEnv(env []string, k, v string) []string {
	for i, e := range env {
		if ek, _, _ := strings.Cut(e, "="); ek == k {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

// command runs one instruction of st as a step: ARG changes only what
// later steps see; COPY/ADD, RUN and the metadata instructions each become
// a cached step.
func (b *builder) command(ctx context.Context, st *stage, c instructions.Command) error {
	title := strings.ToUpper(c.Name())
	if s, ok := c.(fmt.Stringer); ok {
		title = s.String()
	}
	loc := line(c.Location())
	if ex, ok := c.(instructions.SupportsSingleWordExpansion); ok {
		env := st.env()
		err := ex.Expand(func(w string) (string, error) {
			r, _, err := b.lex.ProcessWord(w, env)
			return r, err
		})
		if err != nil {
			return &Error{File: b.file, Line: loc, Instruction: title, Err: err}
		}
	}
	if a, ok := c.(*instructions.ArgCommand); ok {
		b.applyArg(st, a)
		return nil
	}
	b.step++
	sp := &step{b: b, st: st, c: c, n: b.step, title: title, loc: loc, start: time.Now()}
	b.emit(progress.Event{Kind: progress.KindStepStart, Step: sp.n, Total: b.total, Title: title})
	parent, err := st.img.Digest()
	if err != nil {
		return sp.fail(err)
	}
	sp.parent = parent
	sp.spec, _ = json.Marshal(c)
	sp.history = v1.History{Created: v1.Time{Time: time.Now().UTC().Truncate(time.Second)}, CreatedBy: title, Comment: "machinetop build"}
	switch c := c.(type) {
	case *instructions.CopyCommand, *instructions.AddCommand:
		return sp.copy(ctx)
	case *instructions.RunCommand:
		return sp.run(ctx, c)
	default:
		return sp.meta(ctx)
	}
}

// applyArg sets an ARG's value in st: a --build-arg, else the ARG's
// default, else a global (pre-FROM) ARG of the same name.
func (b *builder) applyArg(st *stage, a *instructions.ArgCommand) {
	for _, kv := range a.Args {
		v, ok := b.opts.BuildArgs[kv.Key]
		if !ok && kv.Value != nil {
			v, ok = *kv.Value, true
		}
		if !ok {
			if mv := getEnv(b.metaArgs, kv.Key); mv != nil {
				v, ok = *mv, true
			}
		}
		if ok {
			st.args = setEnv(st.args, kv.Key, v)
		}
	}
}

// step is one build step being run: where it is, what it builds on, and
// the output kept for its error.
type step struct {
	b       *builder
	st      *stage
	c       instructions.Command
	n       int    // step number, from 1
	title   string // the instruction as written
	loc     int    // line in the Dockerfile
	start   time.Time
	parent  v1.Hash // the image the step builds on
	spec    []byte  // the parsed instruction, for the cache key
	history v1.History
	tail    *tailLines // RUN's last output lines
}

// fail reports the step failed and returns its *Error.
func (s *step) fail(err error) error {
	s.b.emit(progress.Event{Kind: progress.KindStepFailed, Step: s.n, Error: err.Error()})
	e := &Error{File: s.b.file, Line: s.loc, Step: s.n, Instruction: s.title, Err: err}
	if s.tail != nil {
		e.Output = s.tail.lines
	}
	return e
}

// key is the step's cache key: the parent image, the instruction and
// whatever else the result depends on (copied content, RUN's request).
func (s *step) key(extra ...string) string {
	h := sha256.New()
	fmt.Fprintf(h, "machinetop-build-v1\x00%s\x00%T\x00%s\x00", s.parent, s.c, s.spec)
	for _, x := range extra {
		fmt.Fprintf(h, "%s\x00", x)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// done makes img the stage's current image.
func (s *step) done(img v1.Image) error {
	cfg, err := img.ConfigFile()
	if err != nil {
		return s.fail(err)
	}
	s.st.img, s.st.cfg = img, cfg.DeepCopy()
	return nil
}

// cached takes the cached result for key, reporting whether there was one.
func (s *step) cached(key string) bool {
	if s.b.opts.NoCache {
		return false
	}
	img, ok := s.b.opts.Store.CacheGet(key)
	if !ok {
		return false
	}
	if err := s.done(img); err != nil {
		return false
	}
	s.b.cached++
	s.b.emit(progress.Event{Kind: progress.KindStepCached, Step: s.n})
	return true
}

// store caches img under key and makes it the stage's image.
func (s *step) store(ctx context.Context, key string, img v1.Image) error {
	img, err := s.b.opts.Store.CachePut(ctx, key, img)
	if err != nil {
		return s.fail(err)
	}
	if err := s.done(img); err != nil {
		return err
	}
	s.b.emit(progress.Event{Kind: progress.KindStepDone, Step: s.n, Duration: time.Since(s.start).Seconds()})
	return nil
}

// append adds layer l to the stage's image and stores the result.
func (s *step) append(ctx context.Context, key string, l v1.Layer) error {
	img, err := mutate.Append(s.st.img, mutate.Addendum{Layer: l, History: s.history, MediaType: types.OCILayer})
	if err != nil {
		return s.fail(err)
	}
	return s.store(ctx, key, img)
}

// copy runs COPY or ADD: a layer of the copied files, keyed by their
// content.
func (s *step) copy(ctx context.Context) error {
	layer, hash, err := s.b.copyLayer(ctx, s.st, s.c)
	if err != nil {
		return s.fail(err)
	}
	key := s.key(hash)
	if s.cached(key) {
		return nil
	}
	l, err := layer()
	if err != nil {
		return s.fail(err)
	}
	return s.append(ctx, key, l)
}

// run runs RUN in a builder machine; the layer is what the command
// changed.
func (s *step) run(ctx context.Context, c *instructions.RunCommand) error {
	req, err := s.b.runRequest(s.st, c)
	if err != nil {
		return s.fail(err)
	}
	env, _ := json.Marshal(req)
	key := s.key(string(env))
	if s.cached(key) {
		return nil
	}
	if s.b.opts.Runner == nil {
		return s.fail(errors.New("RUN needs a builder machine, and none is available"))
	}
	s.tail = &tailLines{max: 20}
	out := &lineWriter{emit: func(line string) {
		s.tail.add(line)
		s.b.emit(progress.Event{Kind: progress.KindLog, Step: s.n, Line: line})
	}}
	pr, pw := io.Pipe()
	type layerRes struct {
		l   *images.FileLayer
		err error
	}
	ch := make(chan layerRes, 1)
	go func() {
		l, err := images.NewFileLayer(pr, s.b.tmp)
		pr.CloseWithError(err)
		ch <- layerRes{l, err}
	}()
	runErr := s.b.opts.Runner.Run(ctx, s.st.img, req, out, pw)
	out.flush()
	pw.CloseWithError(runErr)
	lr := <-ch
	if runErr != nil {
		if ctx.Err() != nil {
			return s.fail(ctx.Err())
		}
		return s.fail(runErr)
	}
	if lr.err != nil {
		return s.fail(fmt.Errorf("reading the step's changes: %w", lr.err))
	}
	s.history.CreatedBy = "RUN " + strings.Join(req.Argv, " ")
	return s.append(ctx, key, lr.l)
}

// meta runs an instruction that changes only the image configuration
// (ENV, WORKDIR, USER, CMD, …): an empty layer in the history.
func (s *step) meta(ctx context.Context) error {
	cfg := s.st.cfg.DeepCopy()
	if err := s.b.metadata(s.st, cfg, s.c); err != nil {
		return s.fail(err)
	}
	key := s.key()
	if s.cached(key) {
		return nil
	}
	s.history.EmptyLayer = true
	cfg.History = append(cfg.History, s.history)
	cfg.Created = s.history.Created
	img, err := mutate.ConfigFile(s.st.img, cfg)
	if err != nil {
		return s.fail(err)
	}
	return s.store(ctx, key, img)
}

// runRequest builds the RunRequest of a RUN in st.
func (b *builder) runRequest(st *stage, c *instructions.RunCommand) (RunRequest, error) {
	if len(c.Files) > 0 {
		return RunRequest{}, errors.New("here-documents in RUN are not supported")
	}
	if len(c.FlagsUsed) > 0 {
		return RunRequest{}, fmt.Errorf("RUN --%s is not supported", c.FlagsUsed[0])
	}
	argv := c.CmdLine
	if c.PrependShell {
		sh := st.cfg.Config.Shell
		if len(sh) == 0 {
			sh = []string{"/bin/sh", "-c"}
		}
		argv = append(slices.Clone(sh), strings.Join(c.CmdLine, " "))
	}
	if len(argv) == 0 {
		return RunRequest{}, errors.New("empty command")
	}
	dir := st.cfg.Config.WorkingDir
	if dir == "" {
		dir = "/"
	}
	return RunRequest{Argv: argv, Env: st.runEnv(), Dir: dir, User: st.cfg.Config.User}, nil
}

// metadata applies a configuration-only instruction to cfg (OCI
// image-spec config.md fields).
func (b *builder) metadata(st *stage, cfg *v1.ConfigFile, c instructions.Command) error {
	cc := &cfg.Config
	shellForm := func(cl instructions.ShellDependantCmdLine) []string {
		if !cl.PrependShell {
			return slices.Clone(cl.CmdLine)
		}
		sh := cc.Shell
		if len(sh) == 0 {
			sh = []string{"/bin/sh", "-c"}
		}
		return append(slices.Clone(sh), strings.Join(cl.CmdLine, " "))
	}
	switch c := c.(type) {
	case *instructions.EnvCommand:
		for _, kv := range c.Env {
			cc.Env = setEnv(cc.Env, kv.Key, kv.Value)
		}
	case *instructions.LabelCommand:
		if cc.Labels == nil {
			cc.Labels = map[string]string{}
		}
		for _, kv := range c.Labels {
			cc.Labels[kv.Key] = kv.Value
		}
	case *instructions.MaintainerCommand:
		cfg.Author = c.Maintainer
	case *instructions.WorkdirCommand:
		p := c.Path
		if !path.IsAbs(p) {
			base := cc.WorkingDir
			if base == "" {
				base = "/"
			}
			p = path.Join(base, p)
		}
		cc.WorkingDir = path.Clean(p)
	case *instructions.UserCommand:
		cc.User = c.User
	case *instructions.ExposeCommand:
		if cc.ExposedPorts == nil {
			cc.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range c.Ports {
			for _, f := range strings.Fields(p) {
				if !strings.Contains(f, "/") {
					f += "/tcp"
				}
				cc.ExposedPorts[f] = struct{}{}
			}
		}
	case *instructions.VolumeCommand:
		if cc.Volumes == nil {
			cc.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			cc.Volumes[v] = struct{}{}
		}
	case *instructions.CmdCommand:
		cc.Cmd = shellForm(c.ShellDependantCmdLine)
		st.cmdSet = true
	case *instructions.EntrypointCommand:
		cc.Entrypoint = shellForm(c.ShellDependantCmdLine)
		if !st.cmdSet {
			cc.Cmd = nil // a base image's CMD does not outlive a new ENTRYPOINT
		}
	case *instructions.ShellCommand:
		cc.Shell = slices.Clone(c.Shell)
	case *instructions.StopSignalCommand:
		cc.StopSignal = c.Signal
	case *instructions.HealthCheckCommand:
		if c.Health != nil {
			cc.Healthcheck = &v1.HealthConfig{Test: c.Health.Test, Interval: c.Health.Interval,
				Timeout: c.Health.Timeout, StartPeriod: c.Health.StartPeriod, Retries: c.Health.Retries}
		}
	case *instructions.OnbuildCommand:
		cc.OnBuild = append(cc.OnBuild, c.Expression)
	default:
		return fmt.Errorf("instruction %s is not supported", strings.ToUpper(c.Name()))
	}
	return nil
}

// copyLayer prepares a COPY or ADD: it writes the layer tar and returns a
// function making the compressed layer, plus the content hash for the
// cache key.
func (b *builder) copyLayer(ctx context.Context, st *stage, c instructions.Command) (func() (v1.Layer, error), string, error) {
	args, err := copyArgsOf(c)
	if err != nil {
		return nil, "", err
	}
	src, srcTag, err := b.copySource(ctx, st, args.from)
	if err != nil {
		return nil, "", err
	}
	spec, err := b.copySpecFor(ctx, st, args)
	if err != nil {
		return nil, "", err
	}
	w, err := newLayerWriter(b.tmp)
	if err != nil {
		return nil, "", err
	}
	if err := writeCopy(w, src, spec); err != nil {
		w.discard()
		return nil, "", err
	}
	hash, err := w.finish()
	if err != nil {
		w.discard()
		return nil, "", err
	}
	return func() (v1.Layer, error) {
		defer w.discard()
		if _, err := w.f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		return images.NewFileLayer(w.f, b.tmp)
	}, srcTag + ":" + hash, nil
}

// copyArgs are the parts of a COPY or ADD that copyLayer uses.
type copyArgs struct {
	sd                 instructions.SourcesAndDest
	from, chown, chmod string
	isAdd              bool
}

// copyArgsOf returns c's arguments, or an error for a form we do not
// support (here-documents, --parents, --exclude, --checksum, URLs).
func copyArgsOf(c instructions.Command) (copyArgs, error) {
	var a copyArgs
	switch c := c.(type) {
	case *instructions.CopyCommand:
		a.sd, a.from, a.chown, a.chmod = c.SourcesAndDest, c.From, c.Chown, c.Chmod
		if c.Parents || len(c.ExcludePatterns) > 0 {
			return a, errors.New("COPY --parents and --exclude are not supported")
		}
	case *instructions.AddCommand:
		a.sd, a.chown, a.chmod, a.isAdd = c.SourcesAndDest, c.Chown, c.Chmod, true
		if len(c.ExcludePatterns) > 0 || c.Checksum != "" {
			return a, errors.New("ADD --exclude and --checksum are not supported")
		}
	}
	if len(a.sd.SourceContents) > 0 {
		return a, errors.New("here-documents in COPY and ADD are not supported")
	}
	for _, s := range a.sd.SourcePaths {
		if a.isAdd && isURL(s) {
			return a, fmt.Errorf("ADD from a URL (%s) is not supported: download the file into the build context and COPY it", s)
		}
	}
	return a, nil
}

// copySource returns where a COPY reads from: the build context, or with
// --from an earlier stage or an image; tag names it for the cache key.
func (b *builder) copySource(ctx context.Context, st *stage, from string) (src *source, tag string, err error) {
	if from == "" {
		if b.ctxSrc == nil {
			if b.ctxSrc, err = contextSource(b.opts.ContextDir); err != nil {
				return nil, "", err
			}
		}
		return b.ctxSrc, "context", nil
	}
	var img v1.Image
	if j, ok := b.stageIndex(from, st.index); ok {
		img, tag = b.built[j].img, "stage "+from
	} else {
		if img, _, err = b.fromImage(ctx, from); err != nil {
			return nil, "", fmt.Errorf("--from=%s: %w", from, err)
		}
		tag = "image " + from
	}
	src, err = b.imageSource(ctx, img, tag)
	return src, tag, err
}

// copySpecFor resolves a COPY's destination against the working
// directory, and its --chmod and --chown (names looked up in the stage's
// own /etc/passwd and /etc/group).
func (b *builder) copySpecFor(ctx context.Context, st *stage, a copyArgs) (copySpec, error) {
	spec := copySpec{srcs: a.sd.SourcePaths, extract: a.isAdd && a.from == "", zeroIDs: a.from == ""}
	dest := a.sd.DestPath
	spec.destDir = strings.HasSuffix(dest, "/") || dest == "." || strings.HasSuffix(dest, "/.")
	if !path.IsAbs(dest) {
		wd := st.cfg.Config.WorkingDir
		if wd == "" {
			wd = "/"
		}
		dest = path.Join(wd, dest)
	}
	spec.dest = dest
	var err error
	if spec.chmod, err = parseChmod(a.chmod); err != nil {
		return spec, err
	}
	spec.uid, spec.gid, err = parseChown(a.chown, func(file string) (string, error) {
		return b.stageFile(ctx, st, file)
	})
	return spec, err
}

// stageFile returns the content of file in the stage's image, "" when it
// has none.
func (b *builder) stageFile(ctx context.Context, st *stage, file string) (string, error) {
	s, err := b.imageSource(ctx, st.img, "the stage's image")
	if err != nil {
		return "", err
	}
	e, ok := s.entries[file]
	if !ok || e.open == nil {
		return "", nil
	}
	rc, err := e.open()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	return string(data), err
}

// imageSource returns the flattened file tree of img, made once per build.
func (b *builder) imageSource(ctx context.Context, img v1.Image, what string) (*source, error) {
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	if s, ok := b.sources[d]; ok {
		return s, nil
	}
	s, err := imageSource(ctx, img, what, b.tmp)
	if err != nil {
		return nil, err
	}
	b.sources[d] = s
	return s, nil
}

// lineWriter splits output into lines (on \n, and \r for progress
// meters) and passes each to emit.
type lineWriter struct {
	buf  []byte
	emit func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexAny(w.buf, "\r\n")
		if i < 0 {
			break
		}
		if i > 0 {
			w.emit(string(w.buf[:i]))
		}
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 {
		w.flush()
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = nil
	}
}

// tailLines keeps the last max lines.
type tailLines struct {
	max   int
	lines []string
}

func (t *tailLines) add(s string) {
	t.lines = append(t.lines, s)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}
