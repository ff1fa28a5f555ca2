package delivery

import (
	"strings"
	"sync"
	"time"

	"github.com/ringmaster/ringmaster/internal/targeting"
)

// RuleCache compiles rules once and keeps them across snapshots, so a
// rebuild compiles only rules it has not seen. Safe for concurrent use.
type RuleCache struct {
	env *targeting.Env
	mu  sync.Mutex
	m   map[string]*targeting.Rule
}

// NewRuleCache returns an empty cache compiling with env.
func NewRuleCache(env *targeting.Env) *RuleCache {
	return &RuleCache{env: env, m: map[string]*targeting.Rule{}}
}

// Compile returns the compiled rule for src.
func (c *RuleCache) Compile(src string) (*targeting.Rule, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.m[src]; ok {
		return r, nil
	}
	r, err := c.env.Compile(src)
	if err != nil {
		return nil, err
	}
	c.m[src] = r
	return r, nil
}

// zones caches time zones by name. Only valid zones are kept, so device
// input cannot grow it beyond the zone database.
type zones struct{ m sync.Map }

func (z *zones) load(name string) (*time.Location, bool) {
	if v, ok := z.m.Load(name); ok {
		return v.(*time.Location), true
	}
	if len(name) > 64 || strings.Trim(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+-/") != "" {
		return nil, false
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, false
	}
	z.m.Store(name, loc)
	return loc, true
}
