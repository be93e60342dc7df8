package lookup

import (
	"container/list"
	"sync"
	"time"
)

// dnsCache is a size-bounded LRU of certain answers (found, NXDOMAIN,
// NODATA) with their expiry. Could-not-tell results never enter it. A nil
// *dnsCache is a cache that never hits.
type dnsCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // front: most recently used; values are *dnsCacheEntry
	items map[string]*list.Element
}

type dnsCacheEntry struct {
	key     string
	res     DNSResult
	expires time.Time
}

func newDNSCache(max int) *dnsCache {
	return &dnsCache{max: max, order: list.New(), items: make(map[string]*list.Element)}
}

// get returns the cached result for key if it has not expired at now.
func (c *dnsCache) get(key string, now time.Time) (DNSResult, bool) {
	if c == nil {
		return DNSResult{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return DNSResult{}, false
	}
	e := el.Value.(*dnsCacheEntry)
	if !now.Before(e.expires) {
		c.order.Remove(el)
		delete(c.items, key)
		return DNSResult{}, false
	}
	c.order.MoveToFront(el)
	res := e.res
	res.Cached = true
	return res, true
}

// put stores res under key until expires, evicting the least recently used
// entry when full.
func (c *dnsCache) put(key string, res DNSResult, expires time.Time) {
	if c == nil || res.Outcome == DNSCouldNotTell {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		e := el.Value.(*dnsCacheEntry)
		e.res, e.expires = res, expires
		c.order.MoveToFront(el)
		return
	}
	for c.order.Len() >= c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*dnsCacheEntry).key)
	}
	c.items[key] = c.order.PushFront(&dnsCacheEntry{key: key, res: res, expires: expires})
}

// len returns the number of entries, expired ones included.
func (c *dnsCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
