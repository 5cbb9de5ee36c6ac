package queue

import (
	"context"
	"errors"
	"fmt"

	"time"

	"github.com/redis/go-redis/v9"
)

// Errors callers act on.
var (
	// ErrFull is returned by Submit when the queue holds MaxLen jobs; an
	// API answers it with 503 and Retry-After.
	ErrFull = errors.New("queue: full")
	// ErrNotFound is returned for a job id with no result (unknown,
	// expired, or not finished).
	ErrNotFound = errors.New("queue: no such result")
)

// Config names the Redis keys and sets the queue's policy. Zero fields take
// the defaults of DefaultConfig.
type Config struct {
	// Prefix starts every key, so several deployments can share a Redis.
	Prefix string
	// Group is the consumer group all workers join.
	Group string
	// MaxLen bounds the jobs waiting or running; Submit fails beyond it.
	MaxLen int64
	// ResultTTL is how long results are kept.
	ResultTTL time.Duration
	// ClaimIdle is how long a delivered job may go without a heartbeat
	// before another worker reclaims it.
	ClaimIdle time.Duration
	// MaxDeliveries caps how often a job is handed out; a job delivered
	// more often than that is reported as such (Delivery.Exhausted) and
	// must end as Internal Error.
	MaxDeliveries int64
}

// DefaultConfig is the policy used for zero Config fields.
func DefaultConfig() Config {
	return Config{
		Prefix:        "microbox",
		Group:         "workers",
		MaxLen:        10000,
		ResultTTL:     24 * time.Hour,
		ClaimIdle:     30 * time.Second,
		MaxDeliveries: 3,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Prefix == "" {
		c.Prefix = d.Prefix
	}
	if c.Group == "" {
		c.Group = d.Group
	}
	if c.MaxLen == 0 {
		c.MaxLen = d.MaxLen
	}
	if c.ResultTTL == 0 {
		c.ResultTTL = d.ResultTTL
	}
	if c.ClaimIdle == 0 {
		c.ClaimIdle = d.ClaimIdle
	}
	if c.MaxDeliveries == 0 {
		c.MaxDeliveries = d.MaxDeliveries
	}
	return c
}

// Queue is a job queue on one Redis.
type Queue struct {
	rdb *redis.Client
	cfg Config
}

// New returns a queue on rdb. Call Init once before use.
func New(rdb *redis.Client, cfg Config) *Queue {
	return &Queue{rdb: rdb, cfg: cfg.withDefaults()}
}

func (q *Queue) stream() string             { return q.cfg.Prefix + ":jobs" }
func (q *Queue) resultKey(id string) string { return q.cfg.Prefix + ":result:" + id }
func (q *Queue) doneChannel(id string) string {
	return q.cfg.Prefix + ":done:" + id
}

// Init creates the stream and the consumer group if they do not exist.
func (q *Queue) Init(ctx context.Context) error {
	err := q.rdb.XGroupCreateMkStream(ctx, q.stream(), q.cfg.Group, "0").Err()
	if err != nil && !isBusyGroup(err) {
		return fmt.Errorf("queue init: %w", err)
	}
	return nil
}

func isBusyGroup(err error) bool {
	return err != nil && len(err.Error()) >= 9 && err.Error()[:9] == "BUSYGROUP"
}

// submitScript adds a job only while the stream holds fewer than MaxLen
// entries. Acknowledged entries are deleted (see Ack), so the length is
// exactly the jobs waiting or running; check and add are one atomic step.
var submitScript = redis.NewScript(`
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  return false
end
return redis.call('XADD', KEYS[1], '*', 'id', ARGV[2], 'payload', ARGV[3])
`)

// Submit queues a job. It returns ErrFull when the queue is at its bound;
// once it returns nil the job is in Redis (durable with appendfsync always).
func (q *Queue) Submit(ctx context.Context, id string, payload []byte) error {
	res, err := submitScript.Run(ctx, q.rdb, []string{q.stream()}, q.cfg.MaxLen, id, payload).Result()
	if errors.Is(err, redis.Nil) || (err == nil && res == nil) {
		return ErrFull
	}
	if err != nil {
		return fmt.Errorf("queue submit: %w", err)
	}
	return nil
}

// Depth is the number of jobs waiting or running.
func (q *Queue) Depth(ctx context.Context) (int64, error) {
	return q.rdb.XLen(ctx, q.stream()).Result()
}

// Delivery is a job handed to a worker.
type Delivery struct {
	ID      string // the job id given to Submit
	Payload []byte
	// Deliveries counts how often this job was handed out, this time
	// included.
	Deliveries int64
	// Exhausted is set when Deliveries exceeds the cap: the worker must not
	// run it again but end it with an Internal Error result.
	Exhausted bool

	entry string // stream entry id
}

// Next hands the next job to consumer: first a job whose worker stopped
// heartbeating (reclaimed with XAUTOCLAIM), else a new one, waiting up to
// block. It returns (nil, nil) when there is none.
func (q *Queue) Next(ctx context.Context, consumer string, block time.Duration) (*Delivery, error) {
	msgs, _, err := q.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: q.stream(), Group: q.cfg.Group, Consumer: consumer,
		MinIdle: q.cfg.ClaimIdle, Start: "0-0", Count: 1,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("queue reclaim: %w", err)
	}
	if len(msgs) == 0 {
		streams, err := q.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: q.cfg.Group, Consumer: consumer, Streams: []string{q.stream(), ">"},
			Count: 1, Block: block,
		}).Result()
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("queue read: %w", err)
		}
		for _, s := range streams {
			msgs = append(msgs, s.Messages...)
		}
		if len(msgs) == 0 {
			return nil, nil
		}
	}
	m := msgs[0]
	d := &Delivery{entry: m.ID, Deliveries: 1}
	d.ID, _ = m.Values["id"].(string)
	if p, ok := m.Values["payload"].(string); ok {
		d.Payload = []byte(p)
	}
	pend, err := q.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: q.stream(), Group: q.cfg.Group, Start: m.ID, End: m.ID, Count: 1,
	}).Result()
	if err == nil && len(pend) == 1 {
		d.Deliveries = pend[0].RetryCount
	}
	d.Exhausted = d.Deliveries > q.cfg.MaxDeliveries
	return d, nil
}

// Heartbeat tells the group that consumer still works on d, so that it is
// not reclaimed; call it more often than ClaimIdle.
func (q *Queue) Heartbeat(ctx context.Context, consumer string, d *Delivery) error {
	// XCLAIM to the same consumer with JUSTID resets the idle time without
	// counting a delivery.
	return q.rdb.XClaimJustID(ctx, &redis.XClaimArgs{
		Stream: q.stream(), Group: q.cfg.Group, Consumer: consumer, MinIdle: 0, Messages: []string{d.entry},
	}).Err()
}

// Ack ends a delivery: the job is acknowledged and its entry deleted. Call
// it only after its result is stored (PutResult), so a crash in between
// means a retry, never a lost job.
func (q *Queue) Ack(ctx context.Context, d *Delivery) error {
	_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAck(ctx, q.stream(), q.cfg.Group, d.entry)
		p.XDel(ctx, q.stream(), d.entry)
		return nil
	})
	return err
}

// PutResult stores a job's result unless one is stored already (a retried
// job may finish twice: the first result stands), and wakes its waiters.
// It reports whether this call stored it.
func (q *Queue) PutResult(ctx context.Context, id string, result []byte) (bool, error) {
	stored, err := q.rdb.SetNX(ctx, q.resultKey(id), result, q.cfg.ResultTTL).Result()
	if err != nil {
		return false, fmt.Errorf("queue result: %w", err)
	}
	_ = q.rdb.Del(ctx, q.runningKey(id)).Err()
	if err := q.rdb.Publish(ctx, q.doneChannel(id), "1").Err(); err != nil {
		return stored, fmt.Errorf("queue notify: %w", err)
	}
	return stored, nil
}

func (q *Queue) runningKey(id string) string { return q.cfg.Prefix + ":running:" + id }

// MarkRunning records that a worker has started the job, for as long as it
// heartbeats (the mark expires after ClaimIdle without one).
func (q *Queue) MarkRunning(ctx context.Context, id string) error {
	return q.rdb.Set(ctx, q.runningKey(id), "1", q.cfg.ClaimIdle).Err()
}

// Running says whether a worker is running the job now.
func (q *Queue) Running(ctx context.Context, id string) (bool, error) {
	n, err := q.rdb.Exists(ctx, q.runningKey(id)).Result()
	return n == 1, err
}

// DeleteResult removes a stored result; it reports whether there was one.
func (q *Queue) DeleteResult(ctx context.Context, id string) (bool, error) {
	n, err := q.rdb.Del(ctx, q.resultKey(id), q.runningKey(id)).Result()
	return n > 0, err
}

// Result returns a stored result, or ErrNotFound.
func (q *Queue) Result(ctx context.Context, id string) ([]byte, error) {
	b, err := q.rdb.Get(ctx, q.resultKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	return b, err
}

// Wait returns the job's result as soon as it is stored, woken by
// PutResult's notification; ctx bounds the wait.
func (q *Queue) Wait(ctx context.Context, id string) ([]byte, error) {
	// Subscribe first, then look: a result stored in between is seen by
	// the look, one stored after it by the subscription.
	sub := q.rdb.Subscribe(ctx, q.doneChannel(id))
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
		return nil, fmt.Errorf("queue wait: %w", err)
	}
	if b, err := q.Result(ctx, id); !errors.Is(err, ErrNotFound) {
		return b, err
	}
	// The notification is lost if Redis restarts (or the connection
	// drops) before the subscription is back: look again now and then, so
	// a result stored meanwhile is still seen.
	ch := sub.Channel()
	recheck := time.NewTicker(waitRecheck)
	defer recheck.Stop()
	for {
		select {
		case <-ch:
			b, err := q.Result(ctx, id)
			if err == nil || errors.Is(err, ErrNotFound) {
				return b, err
			}
			// Notified, but the read failed: a connection of a Redis
			// that restarted. The next look (recheck) reads it again.
		case <-recheck.C:
			if b, err := q.Result(ctx, id); err == nil {
				return b, nil
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// waitRecheck is how often Wait looks for the result besides its
// notification.
const waitRecheck = 2 * time.Second
