package redis

import "strconv"

// Keys names the Redis keys of one deployment (docs/ARCHITECTURE.md). Every key that
// belongs to a partition or a gateway carries a hash tag ({p:N}, {gw:G}) so
// that the keys one script touches live in one Redis Cluster slot.
// With the default prefix "stm":
//
//	stm:meta                 hash: deployment settings (field "partitions")
//	stm:{p:N}:events         stream: partition N of the event log, group "streamer"
//	stm:{p:N}:dead           stream: dead letters of partition N
//	stm:{p:N}:lease          string: node owning partition N (PX ttl)
//	stm:nodes                zset: live nodes by heartbeat deadline (ms)
//	stm:{gw:G}:subs          hash: gateway G's subscriptions (PEXPIREAT deadline)
//	stm:{gw:G}:subs:N        set: ids of G's subscriptions in partition N (what a takeover of N loads)
//	stm:{gw:G}:subsidx       string: G's subscriptions are in the sets above (absent: stored before them)
//	stm:{gw:G}:substenant    hash: subscription id → its tenant
//	stm:tenantsubs           hash: "t:<tenant>" → subscriptions of registered gateways (per-tenant limit)
//	stm:{gw:G}:out           stream: gateway G's outbox
//	stm:{gw:G}:outdel        string: greatest id deleted from G's outbox
//	stm:{gw:G}:outmeta       hash: G's outbox retirement ("r"), partition N's fence ("N"), bytes held ("b")
//	stm:{gw:G}:outsz         stream: the payload size of each entry of G's outbox, same ids
//	stm:{gw:G}:session       string: "<epoch>:<node>" of G's session
//	stm:gateways             zset: gateways by heartbeat deadline (ms)
//	stm:{lock:NAME}          string: holder of lock NAME (PX ttl)
//	stm:checkpoint:{NAME}    string: checkpoint NAME
type Keys struct {
	// Prefix starts every key; "stm" by default.
	Prefix string
}

// Meta is the hash recording deployment settings such as the partition count.
func (k Keys) Meta() string { return k.Prefix + ":meta" }

// Events is partition p's stream of the event log.
func (k Keys) Events(p int) string { return k.partition(p) + ":events" }

// Dead is partition p's dead-letter stream.
func (k Keys) Dead(p int) string { return k.partition(p) + ":dead" }

// Lease is partition p's lease.
func (k Keys) Lease(p int) string { return k.partition(p) + ":lease" }

// Nodes is the registry of live nodes.
func (k Keys) Nodes() string { return k.Prefix + ":nodes" }

// Subs is gateway's subscription hash.
func (k Keys) Subs(gateway string) string { return k.gateway(gateway) + ":subs" }

// SubsIn is the set of the ids of gateway's subscriptions whose events are
// in partition p.
func (k Keys) SubsIn(gateway string, p int) string {
	return k.gateway(gateway) + ":subs:" + strconv.Itoa(p)
}

// SubsIndexed marks a gateway whose subscriptions are all in the SubsIn
// sets; without it (subscriptions stored by an older version) a takeover
// reads the gateway's whole hash.
func (k Keys) SubsIndexed(gateway string) string { return k.gateway(gateway) + ":subsidx" }

// SubsTenants maps each of gateway's subscriptions to its tenant.
func (k Keys) SubsTenants(gateway string) string { return k.gateway(gateway) + ":substenant" }

// TenantSubs counts the subscriptions of each tenant (field "t:<tenant>").
func (k Keys) TenantSubs() string { return k.Prefix + ":tenantsubs" }

// Outbox is gateway's outbox stream.
func (k Keys) Outbox(gateway string) string { return k.gateway(gateway) + ":out" }

// OutboxDeleted records the greatest id ever deleted from gateway's outbox
// (by the cap or by a trim), which Lost compares cursors with.
func (k Keys) OutboxDeleted(gateway string) string { return k.gateway(gateway) + ":outdel" }

// OutboxMeta is a hash about gateway's outbox: field "r" is the id the
// latest Outboxes.Retire returned, field "N" the fence of partition N,
// before which Append drops the items routed from N, and field "b" the
// bytes of payload the outbox holds (the byte cap's count).
func (k Keys) OutboxMeta(gateway string) string { return k.gateway(gateway) + ":outmeta" }

// OutboxSizes is a stream with the same ids as gateway's outbox, each
// entry the size of its payload: what deleting a prefix frees, read without
// the payloads.
func (k Keys) OutboxSizes(gateway string) string { return k.gateway(gateway) + ":outsz" }

// Session is gateway's session record.
func (k Keys) Session(gateway string) string { return k.gateway(gateway) + ":session" }

// Gateways is the registry of gateways by heartbeat deadline.
func (k Keys) Gateways() string { return k.Prefix + ":gateways" }

// Lock is lock name's key.
func (k Keys) Lock(name string) string { return k.Prefix + ":{lock:" + name + "}" }

// Checkpoint is checkpoint name's key.
func (k Keys) Checkpoint(name string) string { return k.Prefix + ":checkpoint:{" + name + "}" }

func (k Keys) partition(p int) string { return k.Prefix + ":{p:" + strconv.Itoa(p) + "}" }

func (k Keys) gateway(g string) string { return k.Prefix + ":{gw:" + g + "}" }
