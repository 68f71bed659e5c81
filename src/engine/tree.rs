//! The broadcast tree (Plumtree, with eager push on): which peers get new messages pushed
//! (*eager* links) and which only get them announced (*lazy* links), and the two tree timers
//! ([`Timer::LazyAnnounce`](super::Timer::LazyAnnounce), [`Timer::Graft`](super::Timer::Graft)).
//!
//! [`Tree`] owns every piece of tree state: each link's role, its author links (both ways),
//! its grace period, the ids a lazy peer announced while they wait for a pushed copy, the
//! graft deadlines, and the lazy announcement schedule. The engine asks it and carries out
//! what it answers (sending `prune`, `graft`, wants and announcements); nothing else changes
//! a link's role.
//!
//! Rules, all here:
//! - the tree is *on* with `eager_push` and `broadcast_tree`; off, no link is ever pruned by
//!   this node and announcements are not deferred (without eager push every message goes in
//!   rounds; without the tree it is pushed to every eager link, which is every link unless
//!   the peer sent `prune`);
//! - every new connection starts eager, with grace for `want_timeout`, unless the peer's
//!   last link was lazy and ended less than [`ROLE_MEMORY_MS`] ago: a link that breaks and
//!   comes back (a lost packet that broke the transport, a redial) starts lazy again, and
//!   this node sends `prune` first, so the tree keeps its shape instead of growing an eager
//!   link per reconnect (up to [`MAX_REMEMBERED`] peers; a fresh peer id starts eager, as any
//!   new peer, and being lazy is never an advantage a peer could ask for). A link that
//!   delivers a new message first is eager ([`Tree::on_first_copy`]), also when the copy
//!   came by an author link (below: leaving such a link lazy here made its peer graft this
//!   node for other authors' messages, 100 ms late at that hop, on the propagation
//!   benchmark);
//! - a link whose peer has sent nothing at all on this connection (not even the complete
//!   digest every peer sends when it connects) is pushed to for its grace and
//!   [`PUSHES_TO_EARN`] messages more; the next message is announced instead, the link becomes
//!   lazy and the peer is sent `prune` ([`Tree::route`]). A Sybil that reads and never sends
//!   costs a few pushes per peer id, not one per message (a reconnect within
//!   [`ROLE_MEMORY_MS`] starts lazy again); an honest peer is not affected: its first frame
//!   comes within a round trip, and a peer heard on its last link is heard on a link that
//!   comes back within [`ROLE_MEMORY_MS`] (a connection that carries on after a duplicate
//!   closed brings no new first frame). A Sybil that sends a frame is then under the caps
//!   below;
//! - eager links are capped ([`Tree::trim`], before each new message is routed). A link that
//!   delivered no new message (pushed or asked for, accepted) within [`PROVEN_MS`], nor
//!   within the node's last [`PROVEN_MESSAGES`] new messages from peers, is *unproven*. Of
//!   the unproven links past their trim grace (a new connection's `want_timeout`, or that of
//!   this node's latest graft of it) that the peer did not graft, at most
//!   [`MAX_PLAIN_EAGER`] stay eager, none of them a peer whose track record says it failed
//!   (it let a want of it lapse: `record.rs`); of those the peer grafted since the link
//!   was last lazy
//!   (*called*), in their grace or not, at most [`MAX_CALLED_EAGER`] (and the plain places
//!   left free). The rest become lazy and are sent `prune`. Worst first: a congested link
//!   (it is not pushed to anyway); then, of plain links, by track record (`record.rs`), the
//!   longest since a delivery, the oldest connection (a peer that just connected gets its
//!   chance: at dawn, Sybils that came first hold nothing against honest links that come
//!   later); of called links, by track record, the latest first graft (incumbents stay).
//!   The message's deliverer, and a peer whose message awaits the application's verdict, are
//!   not counted. So peers that deliver nothing (Sybils that relay on one link only, forgers,
//!   liars, sinks that send one frame, prune/graft abusers, peers that get this node to graft
//!   them again and again) get at most ten pushes per message, however many connections they
//!   hold, beside links in their first `want_timeout`. An honest peer that needs this node's
//!   pushes, such as a child in a one-author tree (which never delivers anything), grafts it
//!   after it is trimmed (messages within `graft_timeout` of the trim wait for it) and is
//!   then kept as called: plain links never displace it. What is left: peers that graft, or
//!   that publish a message of their own now and then (it proves their link), take places an
//!   honest child would have had. Eight links that their peers grafted first and that sit
//!   (Sybils that graft once) keep out a child that grafts later, or that went lazy and
//!   grafted again: it then gets each message announced and wanted, `announce_delay` +
//!   `graft_timeout` + a round trip late at that hop, as an eager upstream that holds its
//!   pushes can already make it (the threat model's limits);
//! - a duplicate pushed over a lazy link means the peer holds the link eager: it is sent
//!   `prune` again (the two ends agree again; this end's role does not change);
//! - a duplicate pushed over an eager link shows a redundant path: the link becomes lazy and
//!   the peer is sent `prune` (so it stops pushing to this node too), unless the link is in
//!   its grace period (a catch-up or an answer to a graft may still be in flight), the copy
//!   answered this node's own want of that peer, or the message's first copy came over a
//!   link that was *suspect* then ([`Tree::on_duplicate`]);
//! - a link is suspect for [`SUSPECT_MS`] after it was eager while this node had to graft
//!   another peer for a message it lacked, once that message came in answer to a want
//!   ([`Tree::arrived`]): it pushed nothing of a message the network had.
//!   The suspicion is lifted when the link pushes that message after all (an honest upstream
//!   on a slower path does, a few hops later; an injector can too, once the graft is done,
//!   which is why the grace below, not suspicion, bounds it). The links eager at the graft
//!   are marked *pending* for the grafted id; they become suspect only if it then comes in
//!   answer to a want (of the grafted peer, or of whoever the want moved to; the deliverer
//!   is never marked). An id no one delivers (a made-up announcement), one that a link
//!   pushes after all (a slow upstream, or an id announced before its author published
//!   it), and this node's own messages mark none. A link keeps the marks of its latest
//!   [`MAX_PENDING`] grafts, each for [`SUSPECT_MS`], so grafts for made-up ids in between
//!   do not push a withheld id's mark out unless they are more than that within its round
//!   trip; a link that leaves with a live mark comes back suspect. What still marks them is
//!   a peer that announces and answers a message the eager links did not push (its own,
//!   freshly signed: one signature a minute per victim; with validation, even one the
//!   application then rejects), as withholding does. Suspicion
//!   outlives the connection: a peer that reconnects is as suspect as it was (up to
//!   [`MAX_SUSPECTED`] disconnected peers are remembered; a fresh peer id starts clean, as
//!   any new peer). A link in grace is not marked, so a peer that sets `graft` on its own
//!   frames escapes suspicion; against it, a link grafted a second time within
//!   [`SUSPECT_MS`], by either end, keeps its grace for [`SUSPECT_MS`] on the end that grafts
//!   and on the end that is told (the first graft's grace is `want_timeout`;
//!   [`graft_grace`]): prunes that keep undoing the same repair stop after the second, so an
//!   injector costs a neighbour pair at most two repairs a minute.
//!   A peer that pushes its own fresh envelopes to two neighbours at once makes their copies
//!   to each other duplicates; pruning on them would leave it the eager link of both, from
//!   which it then withholds. Once a message it withheld came in answer to a graft, its first
//!   copies prune nothing (the ids it delivered first while suspect are remembered for the
//!   rest of its suspicion, up to [`MAX_FROM_SUSPECT`]; if more than that went by, no link is
//!   pruned while any other eager link is suspect, as if all were remembered);
//!   and every prune it causes is undone by the next honest message within `graft_timeout`
//!   and a round trip;
//! - `prune` from a peer makes its link lazy; `graft` makes it eager with grace, and this
//!   side does not prune it for `want_timeout`, or for [`SUSPECT_MS`] if the link was grafted
//!   within the last [`SUSPECT_MS`] already, by either end (it was needed twice: the
//!   duplicates a third party can cause by writing to both ends at once are no sign of
//!   redundancy)
//!   ([`Tree::on_control`]), with the tree on or off. Grace on both sides of a graft is
//!   scaled so: one graft is a repair that a calm tree may prune again on its next
//!   duplicate; a repair undone within the minute is kept for the minute;
//! - new messages are pushed to eager links ([`Tree::route`]) and announced to lazy ones
//!   within `announce_delay` ([`Tree::announce_later`]); with no delay, at the end of the same
//!   input. Waiting a little lets the peer's own announcement of the same id arrive first,
//!   so a lazy link mostly carries one announcement per message, not one each way;
//! - ids a lazy peer announces are not asked for at once: an eager copy usually follows
//!   ([`Tree::defers`], [`Tree::defer`]). After `graft_timeout`, those still missing are
//!   wanted from it and it is grafted (it becomes eager with grace, and is sent `graft`),
//!   which repairs the tree after a link or node failure within `graft_timeout` and one
//!   round trip ([`Tree::due_grafts`], [`Tree::grafted`]; the engine's `graft_due` in
//!   `pull.rs` wants the ids and calls `grafted` whenever any was still unknown), whatever
//!   the announcer's track record (withholding the graft from peers that left a want or a
//!   probe unanswered saved liars a few pushes, and slowed the saturated benchmark's honest
//!   network by a fifth at p50: under load honest wants lapse too). The
//!   announcer is grafted even when the ids are already wanted from another peer: no pushed
//!   copy came, so the tree is broken here (and the peer they are wanted from may announce
//!   without ever pushing);
//! - *author links*: with a graft of a peer whose record did not fail, one author of the
//!   ids wanted (one this node already held messages of first, by key: `pull.rs`; a frame
//!   takes up to [`MAX_CONTROL_AUTHORS`](crate::frame::MAX_CONTROL_AUTHORS)) is asked for in
//!   `graft_authors`, and the peer then pushes its new messages whatever the link's role
//!   ([`Tree::route`]). A plain `prune` leaves
//!   them; one ends when this node names the author in `prune_authors`, the connection
//!   ends, the peer keeps more than [`MAX_AUTHOR_LINKS`] for this node (the one used least
//!   recently goes), or [`Tree::trim`] drops it: of the unproven lazy links with an author
//!   link of a message's author, at most [`MAX_CALLED_EAGER`] keep it, a cap of their own
//!   (they never take an eager link's place), worst first by congestion, track record and
//!   the latest first asked. So the shared tree has exceptions per author where it failed
//!   one, and they outlive the prunes that duplicates of other authors make: a publisher
//!   whose neighbours get every other author's messages faster elsewhere (Sybils that
//!   relay all but its messages) keeps the links its messages were grafted over. This node
//!   keeps the id of the latest graft that asked each peer for each author (up to
//!   [`MAX_AUTHOR_LINKS`] authors), and ([`Tree::on_duplicate`]):
//!   - if another link then pushes a grafted id, the shared tree carried it, only slower (a
//!     queue, not a break: on a saturated network most grafts are): that author link ends
//!     at once (`prune_authors` to the grafted peer), and the duplicate is handled as any
//!     (author links that outlived such grafts cost the propagation benchmark's saturated
//!     network 15-30 % at p50);
//!   - a duplicate over a link held lazy here, of an author asked for there, ends that
//!     author link alone (`prune_authors` without `prune`), whatever the suspicion that
//!     keeps links from being pruned (it guards the shared tree; an ended author link
//!     leaves the author to it, and a graft brings the author link back), unless its first
//!     copy came over a link that was suspect then;
//!   - a duplicate over a link held lazy here, of an author not asked for there, is told
//!     again with the author in `prune_authors` (the peer may be pushing it by an author
//!     link this node no longer counts; while the suspicion rules hold every link, after
//!     too many ids delivered first by suspect links to remember, the author only);
//!   - a duplicate over an eager link that prunes it names the author too if it was asked
//!     for there.
//!
//!   A peer without author links sees only the flags, and keeps one tree. A frame's lists
//!   are applied before its flags, `prune_authors` first (an author in both is asked for);
//!   `graft_authors` is honoured without `graft` (a node that prunes after grafting in one
//!   input sends both);
//!
//! What a peer sends here changes how this node sends to that same peer (a false `graft`
//! draws each message at most once per connection, as any push, and a false author link
//! each of that author's messages, within the caps of [`Tree::trim`]; a false `prune` only
//! stops its own pushes, and false announcements go through the want rules, `wants.rs`,
//! which move ids to other peers that have them), and, through the caps, which other unproven links
//! stay eager: a peer's grafts, deliveries and record rank it against them.
//!
//! Bounds: one [`Link`] per connected peer, with at most [`MAX_AUTHOR_LINKS`] author links
//! each way (a frame's author lists are at most
//! [`MAX_CONTROL_AUTHORS`](crate::frame::MAX_CONTROL_AUTHORS) each, so one costs at most
//! 2 × 8 × 16 key comparisons; routing a message and [`Tree::trim`] look at each link's
//! author links, as many; a duplicate at each link's asked ids, as many); deferred ids at
//! most `max_ranges_per_peer` ranges per link (the lowest ids of an author, then whole
//! authors, are forgotten beyond it); one graft deadline per link. [`Tree::trim`] looks at
//! every link per new message (as routing does) and sorts only when a cap is passed: after a
//! trim each class is at its cap, so a sort covers the links that became unproven since,
//! each of which cost its peer a connection or a graft, or ended a delivery's proof.

use super::Millis;
use super::expiring::Expiring;
use super::ids::{IdSets, RangeQueue};
use super::record::Standing;
use crate::envelope::MessageId;
use crate::keys::PublicKey;
use crate::ranges::RangeSet;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

/// What a link does with a new message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// New messages are pushed to the peer.
    Eager,
    /// New messages are announced to the peer.
    Lazy,
}

/// How a new message goes to a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Send the envelope.
    Push,
    /// Announce its id.
    Announce,
    /// Announce its id, and send `prune`: the link was eager and its peer never sent a frame.
    Demote,
}

/// How long a link stays suspect after it was eager while another peer had to be grafted
/// (ten times the default `want_timeout`: an attacker's prunes cost it an injection per
/// minute per neighbour pair, and an honest repair keeps the tree as it is for a minute).
pub(crate) const SUSPECT_MS: Millis = 60_000;

/// How many disconnected peers' suspicion is remembered until it ends.
pub(crate) const MAX_SUSPECTED: usize = 1_024;

/// How long a lazy link's role outlives its connection: a reconnect within it starts lazy.
pub(crate) const ROLE_MEMORY_MS: Millis = 60_000;

/// How many disconnected peers' lazy role is remembered.
pub(crate) const MAX_REMEMBERED: usize = 1_024;

/// How many messages are pushed over an eager link past its grace while its peer has sent
/// nothing at all: a peer slower than its grace to send its first frame still gets a few.
pub(crate) const PUSHES_TO_EARN: u32 = 8;

/// How many ids delivered first by a suspect link are remembered (for the rest of its
/// suspicion): their duplicates prune nothing.
pub(crate) const MAX_FROM_SUSPECT: usize = 4_096;

/// Pending marks per link ([`Tree::grafted`]): the grafts of about one round trip, while
/// their answers are on the way.
pub(crate) const MAX_PENDING: usize = 4;

/// How long a delivery proves a link ([`Tree::trim`]): a minute, as long as a suspicion.
pub(crate) const PROVEN_MS: Millis = 60_000;

/// How many of the node's latest new messages from peers prove a link ([`Tree::trim`]),
/// however long they took: a quiet network keeps its tree between messages. A source quieter
/// than a minute and this many others (which anyone can publish) is trimmed at a node with
/// two unproven plain links or more that rank above it, and grafted again: each of its
/// messages then waits `graft_timeout` there.
pub(crate) const PROVEN_MESSAGES: u64 = 64;

/// Unproven eager links the peer did not graft that are kept ([`Tree::trim`]). Two: at 80 %
/// Sybil links (the simulator's 100 honest nodes among 400 Sybils) one cost the honest
/// network more latency (p99 491 ms against 390 with two) for no fewer bytes; four let Sybils
/// take two more pushes per message.
pub(crate) const MAX_PLAIN_EAGER: usize = 2;

/// Unproven eager links the peer grafted that are kept ([`Tree::trim`]): more children than
/// a node of a random graph of degree 6 has in a one-author tree, few enough that peers that
/// graft to be pushed to (however often) get at most eight pushes per message.
pub(crate) const MAX_CALLED_EAGER: usize = 8;

/// Authors a peer may ask to be pushed whatever its link's role ([`Tree::on_control`]), and
/// authors this node remembers asking a peer for: more than a node needs repaired at once in
/// most applications' trees, few enough that both lists cost a link about 1.4 KB; beyond it
/// the author link used least recently goes (and is grafted again if the peer still lacks
/// its messages).
pub(crate) const MAX_AUTHOR_LINKS: usize = 16;

/// An author whose new messages a peer asked to be pushed whatever the link's role.
#[derive(Clone, Copy, Debug)]
struct AuthorLink {
    author: PublicKey,
    /// When the peer first asked for it on this connection: ranks it in [`Tree::trim`]
    /// (incumbents stay; asking again does not make a link older).
    asked_at: Millis,
    /// When it was last asked for or pushed by: the least recently used goes first.
    used_at: Millis,
}

/// The tree's view of one connected peer.
#[derive(Debug)]
struct Link {
    role: Role,
    /// Author links: authors whose new messages the peer asked to be pushed (`graft_authors`)
    /// whatever `role` (at most [`MAX_AUTHOR_LINKS`]).
    authors: Vec<AuthorLink>,
    /// The ids whose grafts asked the peer for their author in `graft_authors`, that author
    /// link not ended since (the latest [`MAX_AUTHOR_LINKS`]): if another link then pushes
    /// one, the shared tree was only slower; a duplicate of the author over this link held
    /// lazy means that author link alone was redundant. Either ends it.
    asked: Vec<MessageId>,
    /// Until then a duplicate over this link does not prune it.
    grace_until: Millis,
    /// Until then the link is not counted by [`Tree::trim`] unless the peer grafted it: a new
    /// connection's grace, or this node's latest graft's (never the minute a second graft
    /// gives against duplicates: a peer that makes this node graft it over and over is
    /// counted as any other).
    trim_grace_until: Millis,
    /// When the link was last grafted, by either end (0: never).
    grafted_at: Millis,
    /// Until then the link is suspect: it was eager and pushed nothing of a message another
    /// peer had to be grafted for. Its first copies meanwhile prune nothing.
    suspect_until: Millis,
    /// The message whose graft made the link suspect: pushing it lifts the suspicion.
    suspect_for: Option<MessageId>,
    /// Messages this node grafted another peer for while this link was eager, each until
    /// [`SUSPECT_MS`] from its graft (at most [`MAX_PENDING`]; an ended one, else the oldest,
    /// makes room): if one comes in answer to a want, this link withheld it and becomes
    /// suspect ([`Tree::arrived`]).
    /// By tag ([`MessageId::tag`]): a graft for an id announced by tag knows only its tag.
    pending: Vec<(u64, Millis)>,
    /// The peer sent a frame on this connection.
    heard: bool,
    /// Messages pushed over the link past its grace while the peer had sent nothing (up to
    /// [`PUSHES_TO_EARN`]).
    pushed_unheard: u32,
    /// When the link last delivered a new message (0: never on this connection).
    first_at: Millis,
    /// The node's count of new messages from peers when this link last delivered one (0:
    /// never).
    first_n: u64,
    /// When the connection came up.
    since: Millis,
    /// When the peer grafted the link, if it did since the link was last lazy (0: not): the
    /// peer needs this node's pushes.
    called_at: Millis,
    /// Ids the peer announced while lazy, waiting `graft_timeout` for a pushed copy.
    deferred: RangeQueue,
    /// When the deferred ids are due.
    graft_at: Option<Millis>,
}

impl Link {
    /// The link becomes lazy: it is no longer called.
    fn make_lazy(&mut self) {
        self.role = Role::Lazy;
        self.called_at = 0;
    }

    /// The link is grafted at `now`, by either end: eager, with the grace [`graft_grace`]
    /// gives (`grace`, or a minute if grafted within the minute already).
    fn graft(&mut self, grace: Millis, now: Millis) {
        self.role = Role::Eager;
        let grace = graft_grace(self, grace, now);
        self.grace_until = self.grace_until.max(now.saturating_add(grace));
    }

    /// This node asks the peer for `id`'s author in `graft_authors`, grafting it for `id`
    /// (one entry per author: the latest graft's id).
    fn ask(&mut self, id: &MessageId) {
        self.asked.retain(|a| a.author != id.author);
        if self.asked.len() >= MAX_AUTHOR_LINKS {
            self.asked.remove(0);
        }
        self.asked.push(*id);
    }

    /// The peer's author link of `author`, if it asked for one.
    fn author_link(&self, author: &PublicKey) -> Option<&AuthorLink> {
        self.authors.iter().find(|l| l.author == *author)
    }

    /// The same, to update.
    fn author_link_mut(&mut self, author: &PublicKey) -> Option<&mut AuthorLink> {
        self.authors.iter_mut().find(|l| l.author == *author)
    }

    /// The author link of `author` ends.
    fn drop_author(&mut self, author: &PublicKey) {
        self.authors.retain(|l| l.author != *author);
    }

    /// The peer asks for `author`'s messages whatever the role, at `now`: the author link is
    /// kept or refreshed; beyond [`MAX_AUTHOR_LINKS`] the one used least recently goes.
    fn add_author(&mut self, author: &PublicKey, now: Millis) {
        if let Some(link) = self.author_link_mut(author) {
            link.used_at = now;
            return;
        }
        if self.authors.len() >= MAX_AUTHOR_LINKS
            && let Some(at) = (0..self.authors.len()).min_by_key(|&i| self.authors[i].used_at)
        {
            self.authors.swap_remove(at);
        }
        self.authors.push(AuthorLink {
            author: *author,
            asked_at: now,
            used_at: now,
        });
    }

    /// This node no longer counts `author` as asked of the peer; whether it did.
    fn unask(&mut self, author: &PublicKey) -> bool {
        let before = self.asked.len();
        self.asked.retain(|id| id.author != *author);
        self.asked.len() < before
    }

    /// The id of `tag` was grafted for while this link was eager, until `until`.
    fn mark_pending(&mut self, tag: u64, until: Millis, now: Millis) {
        if self.pending.len() >= MAX_PENDING {
            // An ended mark goes first, else the one that ends soonest (the oldest).
            let at = (0..self.pending.len())
                .min_by_key(|&i| (self.pending[i].1 > now, self.pending[i].1))
                .expect("full");
            self.pending.swap_remove(at);
        }
        self.pending.push((tag, until));
    }
}

/// What a duplicate pushed over a link shows ([`Tree::on_duplicate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Redundant {
    /// Nothing to tell the peer.
    Nothing,
    /// The author link of the duplicate's author is redundant: the peer is sent it in
    /// `prune_authors`.
    Author,
    /// The link is: the peer is sent `prune`.
    Link,
    /// The link is, and the peer may be pushing by an author link: the peer is sent `prune`,
    /// and the author in `prune_authors`.
    LinkAndAuthor,
}

/// A frame's tree control ([`Tree::on_control`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Control<'a> {
    /// "Stop pushing new messages to me."
    pub(crate) prune: bool,
    /// "Push new messages to me."
    pub(crate) graft: bool,
    /// "Push these authors' new messages to me, whatever the link's role."
    pub(crate) graft_authors: &'a [PublicKey],
    /// "End the author links of these authors."
    pub(crate) prune_authors: &'a [PublicKey],
}

/// The tree's settings, from the config.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TreeConfig {
    pub(crate) eager_push: bool,
    pub(crate) broadcast_tree: bool,
    /// Grace after a connection or a graft (`want_timeout`).
    pub(crate) grace: Millis,
    pub(crate) graft_timeout: Millis,
    pub(crate) announce_delay: Millis,
    /// Deferred ranges per link (`max_ranges_per_peer`).
    pub(crate) max_deferred_ranges: usize,
}

#[derive(Debug)]
pub(crate) struct Tree<P> {
    config: TreeConfig,
    links: BTreeMap<P, Link>,
    /// `(when, peer)` of every armed graft deadline.
    graft_timers: BTreeSet<(Millis, P)>,
    /// Lazy peers with announcements queued for the next lazy announcement.
    lazy_due: BTreeSet<P>,
    /// When the queued lazy announcements are sent.
    next_announce: Option<Millis>,
    /// The latest `suspect_until` of any link: before it, a duplicate looks for suspects.
    suspects_until: Millis,
    /// The latest end of any link's pending marks: before it, an arrival looks for them.
    pendings_until: Millis,
    /// Disconnected peers that were suspect, until when (at most [`MAX_SUSPECTED`]; the
    /// soonest to end goes first).
    suspected: Expiring<P>,
    /// Disconnected peers whose link was lazy, until when ([`ROLE_MEMORY_MS`], at most
    /// [`MAX_REMEMBERED`]).
    were_lazy: Expiring<P>,
    /// Disconnected peers that had sent a frame on their link, until when
    /// ([`ROLE_MEMORY_MS`], at most [`MAX_REMEMBERED`]): a link that comes back (or a
    /// connection that carries on after another closed) starts heard.
    were_heard: Expiring<P>,
    /// Ids whose first copy came over a suspect link, until that suspicion ends (at most
    /// [`MAX_FROM_SUSPECT`]).
    from_suspect: Expiring<MessageId>,
    /// Until then an id delivered first by a suspect link may have been forgotten: no link
    /// is pruned while another eager link is suspect.
    forgotten_until: Millis,
    /// New messages delivered by any link so far ([`Tree::proved`]).
    firsts: u64,
}

impl<P: Clone + Ord> Tree<P> {
    pub(crate) fn new(config: TreeConfig) -> Self {
        Tree {
            config,
            links: BTreeMap::new(),
            graft_timers: BTreeSet::new(),
            lazy_due: BTreeSet::new(),
            next_announce: None,
            suspects_until: 0,
            pendings_until: 0,
            suspected: Expiring::new(MAX_SUSPECTED),
            were_lazy: Expiring::new(MAX_REMEMBERED),
            were_heard: Expiring::new(MAX_REMEMBERED),
            from_suspect: Expiring::new(MAX_FROM_SUSPECT),
            forgotten_until: 0,
            firsts: 0,
        }
    }

    /// Whether the tree is on: with eager push and `broadcast_tree`.
    pub(crate) fn is_on(&self) -> bool {
        self.config.eager_push && self.config.broadcast_tree
    }

    /// A connection to `peer` is up: an eager link with grace, or a lazy one if its last link
    /// was lazy and ended less than [`ROLE_MEMORY_MS`] ago (the engine then sends `prune`).
    /// Returns the role. Whatever else was kept about an earlier connection to it is gone.
    pub(crate) fn connected(&mut self, peer: &P, now: Millis) -> Role {
        self.disconnected(peer, now);
        let suspect_until = self
            .suspected
            .remove(peer)
            .filter(|&until| until > now)
            .unwrap_or(0);
        let was_lazy = self.were_lazy.remove(peer).is_some_and(|until| until > now);
        let heard = self
            .were_heard
            .remove(peer)
            .is_some_and(|until| until > now);
        let role = if was_lazy && self.is_on() {
            Role::Lazy
        } else {
            Role::Eager
        };
        self.links.insert(
            peer.clone(),
            Link {
                role,
                authors: Vec::new(),
                asked: Vec::new(),
                grace_until: if role == Role::Eager {
                    now.saturating_add(self.config.grace)
                } else {
                    0
                },
                trim_grace_until: if role == Role::Eager {
                    now.saturating_add(self.config.grace)
                } else {
                    0
                },
                grafted_at: 0,
                suspect_until,
                suspect_for: None,
                pending: Vec::new(),
                heard,
                pushed_unheard: 0,
                first_at: 0,
                first_n: 0,
                since: now,
                called_at: 0,
                deferred: RangeQueue::default(),
                graft_at: None,
            },
        );
        role
    }

    /// The connection to `peer` is gone.
    pub(crate) fn disconnected(&mut self, peer: &P, now: Millis) {
        let Some(link) = self.links.remove(peer) else {
            return;
        };
        if link.role == Role::Lazy && self.is_on() {
            self.were_lazy
                .insert(peer, now.saturating_add(ROLE_MEMORY_MS));
        }
        if link.heard {
            self.were_heard
                .insert(peer, now.saturating_add(ROLE_MEMORY_MS));
        }
        if let Some(at) = link.graft_at {
            self.graft_timers.remove(&(at, peer.clone()));
        }
        self.lazy_due.remove(peer);
        // A peer that leaves while a graft it did not push is still pending is suspect at
        // once (as every graft made the eager links before): leaving cannot shed the mark.
        let mut suspect_until = link.suspect_until;
        if link.pending.iter().any(|(_, until)| now < *until) {
            suspect_until = suspect_until.max(now.saturating_add(SUSPECT_MS));
        }
        if suspect_until > 0 {
            self.suspected.insert(peer, suspect_until);
        }
    }

    /// The role of `peer`'s link, if it is connected.
    pub(crate) fn role(&self, peer: &P) -> Option<Role> {
        self.links.get(peer).map(|l| l.role)
    }

    /// How a new message of `author` goes to `peer` at `now`: pushed over an eager link with
    /// eager push on, or over a lazy one the peer asked for `author`'s messages (an author
    /// link), else announced. An eager link past its grace whose peer has sent nothing is
    /// demoted after [`PUSHES_TO_EARN`] pushes. (A congested peer is only announced to, and
    /// not asked about here: that is the engine's rule.)
    pub(crate) fn route(&mut self, peer: &P, author: &PublicKey, now: Millis) -> Route {
        let on = self.is_on();
        let Some(link) = self.links.get_mut(peer) else {
            return Route::Announce;
        };
        if !self.config.eager_push {
            return Route::Announce;
        }
        // An author link is kept by its use, whatever carries the push.
        let asked = match link.author_link_mut(author) {
            Some(entry) => {
                entry.used_at = now;
                true
            }
            None => false,
        };
        match link.role {
            // Only a peer that sent a frame has author links: no demotion to weigh.
            Role::Lazy if asked => Route::Push,
            Role::Lazy => Route::Announce,
            Role::Eager if !on || link.heard || now < link.grace_until => Route::Push,
            Role::Eager if link.pushed_unheard < PUSHES_TO_EARN => {
                link.pushed_unheard += 1;
                Route::Push
            }
            Role::Eager => {
                link.make_lazy();
                Route::Demote
            }
        }
    }

    /// Before a new message of `author` is routed: eager links that did not deliver a new
    /// message lately ([`PROVEN_MS`], [`PROVEN_MESSAGES`]) are *unproven*. Beyond
    /// [`MAX_PLAIN_EAGER`] unproven links past their trim grace that the peer did not graft,
    /// and [`MAX_CALLED_EAGER`] unproven links the peer grafted since they were last lazy (in
    /// grace or not: a peer that grafts again stays counted; plain places left free go to
    /// them), the worst become lazy. Worst first: a link `congested` says is; then, of plain
    /// links, by `rank` (the track record), the longest since a delivery, the oldest
    /// connection; of called ones, by `rank`, the latest first graft. Links `exempt` says are
    /// (the message's deliverer, a peer whose message awaits the application's verdict) are
    /// not counted. Apart from them, of the unproven lazy links with an author link of
    /// `author`, at most [`MAX_CALLED_EAGER`] keep it, worst first by `congested`, `rank`,
    /// the latest asked (they never take an eager link's place). Returns the links made
    /// lazy: the engine sends `prune`.
    pub(crate) fn trim(
        &mut self,
        now: Millis,
        author: &PublicKey,
        exempt: impl Fn(&P) -> bool,
        congested: impl Fn(&P) -> bool,
        rank: impl Fn(&P) -> Standing,
    ) -> Vec<P> {
        if !self.is_on() {
            return Vec::new();
        }
        let firsts = self.firsts;
        let proven = |l: &Link| {
            l.first_at > 0
                && (now < l.first_at.saturating_add(PROVEN_MS)
                    || firsts - l.first_n < PROVEN_MESSAGES)
        };
        let unproven = |p: &P, l: &Link| {
            l.role == Role::Eager
                && (l.called_at > 0 || now >= l.trim_grace_until)
                && !exempt(p)
                && !proven(l)
        };
        let (mut plain, mut failed, mut called) = (0, 0, 0);
        for (p, link) in self.links.iter().filter(|(p, l)| unproven(p, l)) {
            if link.called_at > 0 {
                called += 1;
            } else if rank(p) == Standing::Failed {
                failed += 1;
            } else {
                plain += 1;
            }
        }
        let mut demoted = Vec::new();
        if plain > MAX_PLAIN_EAGER || failed > 0 {
            // A failed peer holds no plain place: it let a want of it lapse.
            let ranked = self
                .links
                .iter()
                .filter(|(p, l)| unproven(p, l) && l.called_at == 0)
                .map(|(p, l)| {
                    let standing = rank(p);
                    let failed = standing == Standing::Failed;
                    let key = (failed, congested(p), standing, Reverse(l.first_at));
                    let key = (key, Reverse(l.since));
                    (key, p.clone())
                });
            demoted.extend(beyond(ranked, plain.min(MAX_PLAIN_EAGER)));
        }
        // Places the plain links leave free go to called ones.
        let called_cap = MAX_CALLED_EAGER + MAX_PLAIN_EAGER.saturating_sub(plain);
        if called > called_cap {
            let ranked = self
                .links
                .iter()
                .filter(|(p, l)| unproven(p, l) && l.called_at > 0)
                .map(|(p, l)| ((congested(p), rank(p), l.called_at), p.clone()));
            demoted.extend(beyond(ranked, called_cap));
        }
        for p in &demoted {
            if let Some(link) = self.links.get_mut(p) {
                link.make_lazy();
            }
        }
        // Author links of lazy links, apart (most links have none: no sort then).
        let asked_at = |p: &P, l: &Link| match l.author_link(author) {
            Some(a) if l.role == Role::Lazy && !exempt(p) && !proven(l) => Some(a.asked_at),
            _ => None,
        };
        let asking = self
            .links
            .iter()
            .filter(|(p, l)| asked_at(p, l).is_some())
            .count();
        if asking > MAX_CALLED_EAGER {
            let ranked = self.links.iter().filter_map(|(p, l)| {
                let at = asked_at(p, l)?;
                Some(((congested(p), rank(p), at), p.clone()))
            });
            for p in beyond(ranked, MAX_CALLED_EAGER) {
                if let Some(link) = self.links.get_mut(&p) {
                    link.drop_author(author);
                }
            }
        }
        demoted
    }

    /// `peer` delivered a new message (pushed or asked for) that the node accepts: its link
    /// is proven for [`PROVEN_MS`] and the node's next [`PROVEN_MESSAGES`] new messages from
    /// peers ([`Tree::trim`]).
    pub(crate) fn proved(&mut self, peer: &P, now: Millis) {
        // Counted even if the peer has left (with validation, the verdict can come later).
        self.firsts += 1;
        let Some(link) = self.links.get_mut(peer) else {
            return;
        };
        link.first_at = now.max(1);
        link.first_n = self.firsts;
    }

    /// `peer` delivered new message `id` first (pushed, not asked for): its link is eager. If
    /// the link is suspect, `id`'s duplicates prune nothing.
    pub(crate) fn on_first_copy(&mut self, peer: &P, id: &MessageId, now: Millis) {
        let Some(link) = self.links.get_mut(peer) else {
            return;
        };
        link.role = Role::Eager;
        lift_if_pushed(link, id);
        if now < link.suspect_until
            && let Some((_, end)) = self.from_suspect.insert(id, link.suspect_until)
            && now < end
        {
            // An id that still counted went to make room (entries that have ended go first,
            // being the soonest to end): for the rest of its time, as if every such id were
            // remembered.
            self.forgotten_until = self.forgotten_until.max(end);
        }
    }

    /// `peer` pushed message `id`, which this node already had; `answered` if it had been
    /// asked of that peer (an answer to this node's own want is no sign of a redundant path).
    /// Returns what the engine tells the peer, and another peer whose author link of the
    /// author ends (`prune_authors`).
    pub(crate) fn on_duplicate(
        &mut self,
        peer: &P,
        id: &MessageId,
        answered: bool,
        now: Millis,
    ) -> (Redundant, Option<P>) {
        if let Some(link) = self.links.get_mut(peer) {
            lift_if_pushed(link, id);
        }
        if !self.is_on() || answered {
            return (Redundant::Nothing, None);
        }
        // Pushed by another link after a graft asked for its author: the shared tree carried
        // it, only slower (a queue, not a break), and that author link ends.
        let slower = self
            .links
            .iter_mut()
            .find(|(p, l)| *p != peer && l.asked.contains(id))
            .map(|(p, l)| {
                l.unask(&id.author);
                p.clone()
            });
        (self.duplicate(peer, id, now), slower)
    }

    /// [`Tree::on_duplicate`], for the link the duplicate came over.
    fn duplicate(&mut self, peer: &P, id: &MessageId, now: Millis) -> Redundant {
        // The first copy came over a link suspect then: this duplicate may be an injector's.
        if self.from_suspect.get(id).is_some_and(|until| now < until) {
            return Redundant::Nothing;
        }
        // Held lazy here, and an author this node asked the peer for: pushed by that author
        // link, which alone ends, whatever the suspicion below (that guards the shared tree;
        // an ended author link leaves the author to it, and a graft brings it back).
        if let Some(link) = self.links.get_mut(peer)
            && link.role == Role::Lazy
            && link.unask(&id.author)
        {
            return Redundant::Author;
        }
        // Some such ids were forgotten: as if this were one, while any link is suspect. (Most
        // duplicates come with no link suspect: no scan then.)
        let suspect = now < self.forgotten_until
            && now < self.suspects_until
            && self
                .links
                .iter()
                .any(|(p, l)| p != peer && l.role == Role::Eager && now < l.suspect_until);
        let Some(link) = self.links.get_mut(peer) else {
            return Redundant::Nothing;
        };
        if link.role == Role::Lazy {
            // Pushed over a link this end holds lazy: the peer holds it eager (it missed the
            // prune, or turned the link eager on a catch-up's first copies after a
            // reconnect), or pushes by an author link this node did not ask for (or no
            // longer counts). Told again, with the author (which this node does not want
            // pushed here whatever the suspicion), so the two ends agree.
            return if suspect {
                Redundant::Author
            } else {
                Redundant::LinkAndAuthor
            };
        }
        if suspect || now < link.grace_until {
            return Redundant::Nothing;
        }
        link.make_lazy();
        // An author this node asked the peer for: its author link is redundant too.
        if link.unask(&id.author) {
            Redundant::LinkAndAuthor
        } else {
            Redundant::Link
        }
    }

    /// A frame from `peer`, with its tree control, at `now`: the author links it ends
    /// (`prune_authors`), those it asks for (`graft_authors`), then the flags.
    pub(crate) fn on_control(&mut self, peer: &P, control: &Control<'_>, now: Millis) {
        let Some(link) = self.links.get_mut(peer) else {
            return;
        };
        link.heard = true;
        for author in control.prune_authors {
            link.drop_author(author);
        }
        for author in control.graft_authors {
            link.add_author(author, now);
        }
        let Control { prune, graft, .. } = *control;
        if graft {
            // The peer lacked a message this link would have pushed: a duplicate over it is
            // no sign of a redundant path for a while (a minute if grafted twice).
            if link.called_at == 0 {
                link.called_at = now.max(1);
            }
            link.graft(self.config.grace, now);
        } else if prune {
            link.make_lazy();
        }
    }

    /// Whether ids `peer` announces wait for a pushed copy first: the tree is on and the link
    /// is lazy.
    pub(crate) fn defers(&self, peer: &P) -> bool {
        self.is_on() && self.role(peer) == Some(Role::Lazy)
    }

    /// Keeps `ids` of `author` that `peer` announced (the engine passes only those it
    /// lacks, of an author it accepts) until `graft_timeout` from `now`.
    pub(crate) fn defer(&mut self, peer: &P, author: &PublicKey, ids: &RangeSet, now: Millis) {
        let (max, timeout) = (self.config.max_deferred_ranges, self.config.graft_timeout);
        let Some(link) = self.links.get_mut(peer) else {
            return;
        };
        link.deferred.add(author, ids, max);
        if link.graft_at.is_none() {
            let at = now.saturating_add(timeout);
            link.graft_at = Some(at);
            self.graft_timers.insert((at, peer.clone()));
        }
    }

    /// The next graft deadline.
    pub(crate) fn next_graft(&self) -> Option<Millis> {
        self.graft_timers.first().map(|(at, _)| *at)
    }

    /// The deferred announcements whose graft deadline has come, per peer, earliest first.
    /// For each, the engine wants what is still missing and, if anything was, calls
    /// [`Tree::grafted`].
    pub(crate) fn due_grafts(&mut self, now: Millis) -> Vec<(P, IdSets)> {
        let mut due = Vec::new();
        while let Some((at, peer)) = self.graft_timers.first().cloned() {
            if at > now {
                break;
            }
            self.graft_timers.pop_first();
            if let Some(link) = self.links.get_mut(&peer) {
                link.graft_at = None;
                due.push((peer, link.deferred.take()));
            }
        }
        due
    }

    /// `peer` announced ids that no pushed copy brought within `graft_timeout` (`missing`:
    /// the first of them; `asked`: the id whose author the engine asks for in
    /// `graft_authors`, if it does): its link is eager, with grace. The engine sends `graft`.
    pub(crate) fn grafted(
        &mut self,
        peer: &P,
        missing: &MessageId,
        asked: Option<&MessageId>,
        now: Millis,
    ) {
        self.grafted_tag(peer, missing.tag(), asked, now);
    }

    /// `peer` answered a want by tag with `id`, of an author this node held messages of: it
    /// is asked for that author's link, as [`Tree::grafted`] asks with `asked`.
    pub(crate) fn ask_author(&mut self, peer: &P, id: &MessageId) {
        if let Some(link) = self.links.get_mut(peer) {
            link.ask(id);
        }
    }

    /// [`Tree::grafted`] for an id this node knows only by its tag (announced by tag).
    pub(crate) fn grafted_tag(
        &mut self,
        peer: &P,
        missing: u64,
        asked: Option<&MessageId>,
        now: Millis,
    ) {
        if let Some(link) = self.links.get_mut(peer) {
            link.trim_grace_until = now.saturating_add(self.config.grace);
            link.graft(self.config.grace, now);
            if let Some(id) = asked {
                link.ask(id);
            }
        }
        // The links eager now pushed nothing of what the grafted peer had. They become
        // suspect once the id comes in answer to a want ([`Tree::arrived`]): an id no one
        // delivers (a made-up announcement), or that their push brings after all, marks none.
        let until = now.saturating_add(SUSPECT_MS);
        let mut marked = false;
        for (p, link) in self.links.iter_mut() {
            if p != peer && link.role == Role::Eager && now >= link.grace_until {
                link.mark_pending(missing, until, now);
                marked = true;
            }
        }
        if marked {
            self.pendings_until = until;
        }
    }

    /// New message `id` arrived from `from`, in answer to a want of it if `answered`. If it
    /// was answered, the links this node grafted a peer for it past (within [`SUSPECT_MS`])
    /// withheld it, `from` aside: they are suspect, until they push it. Otherwise (pushed
    /// first by a link, which the tree delivered by, however slowly) none is.
    pub(crate) fn arrived(&mut self, id: &MessageId, from: &P, answered: bool, now: Millis) {
        if now >= self.pendings_until {
            return;
        }
        let tag = id.tag();
        for (p, link) in self.links.iter_mut() {
            let Some(at) = link.pending.iter().position(|(pending, _)| *pending == tag) else {
                continue;
            };
            let (_, until) = link.pending.swap_remove(at);
            if answered && p != from && now < until {
                link.suspect_until = now.saturating_add(SUSPECT_MS);
                link.suspect_for = Some(*id);
                self.suspects_until = link.suspect_until;
            }
        }
    }

    /// A new message was queued for `peer`'s announcement: with eager push, it is sent at the
    /// next lazy announcement, within `announce_delay` of `now` (without eager push, in the
    /// next round).
    pub(crate) fn announce_later(&mut self, peer: &P, now: Millis) {
        if !self.config.eager_push {
            return;
        }
        self.lazy_due.insert(peer.clone());
        if self.next_announce.is_none() {
            self.next_announce = Some(now.saturating_add(self.config.announce_delay));
        }
    }

    /// When the queued lazy announcements are due.
    pub(crate) fn next_announce(&self) -> Option<Millis> {
        self.next_announce
    }

    /// Whether lazy announcements are queued and go at the end of this input
    /// (`announce_delay` is zero).
    pub(crate) fn announces_at_once(&self) -> bool {
        self.next_announce.is_some() && self.config.announce_delay == 0
    }

    /// The peers whose queued announcements are due now; the schedule is cleared.
    pub(crate) fn take_announcements(&mut self) -> BTreeSet<P> {
        self.next_announce = None;
        std::mem::take(&mut self.lazy_due)
    }

    /// `author` is forgotten: its deferred ids go.
    pub(crate) fn forget_author(&mut self, author: &PublicKey) {
        for link in self.links.values_mut() {
            link.deferred.remove_author(author);
        }
    }

    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fn check_invariants(&self) {
        self.suspected.check_invariants();
        self.from_suspect.check_invariants();
        self.were_lazy.check_invariants();
        self.were_heard.check_invariants();
        let armed = self.links.values().filter(|l| l.graft_at.is_some()).count();
        assert_eq!(
            armed,
            self.graft_timers.len(),
            "one graft timer per armed link"
        );
        for (at, peer) in &self.graft_timers {
            assert_eq!(self.links[peer].graft_at, Some(*at), "graft timer mirrored");
        }
        for link in self.links.values() {
            link.deferred
                .check_invariants(self.config.max_deferred_ranges);
            assert!(
                link.called_at == 0 || link.role == Role::Eager,
                "a called link is eager"
            );
            assert!(
                link.authors.len() <= MAX_AUTHOR_LINKS,
                "author links bounded"
            );
            assert!(link.asked.len() <= MAX_AUTHOR_LINKS, "asked bounded");
            let mut authors: Vec<_> = link.authors.iter().map(|l| l.author).collect();
            authors.sort_unstable();
            authors.dedup();
            assert_eq!(
                authors.len(),
                link.authors.len(),
                "one author link per author"
            );
        }
        assert!(
            self.lazy_due.iter().all(|p| self.links.contains_key(p)),
            "announcements only for connected peers"
        );
        assert!(self.lazy_due.is_empty() || self.next_announce.is_some());
    }
}

/// The peers of `ranked` (key, peer) beyond the best `keep`: lowest key first, then peer.
fn beyond<K: Ord, P: Ord>(ranked: impl Iterator<Item = (K, P)>, keep: usize) -> Vec<P> {
    let mut ranked: Vec<(K, P)> = ranked.collect();
    ranked.sort_unstable();
    ranked.into_iter().skip(keep).map(|(_, p)| p).collect()
}

/// The grace of a link grafted at `now`, by either end: `grace` (`want_timeout`), or
/// [`SUSPECT_MS`] if it was grafted within the last [`SUSPECT_MS`] already, by either end
/// (something keeps pruning this repair; counting both directions together, an attacker
/// that makes each end graft in turn gets no more prunes than one that makes one end graft
/// twice). Records the graft.
fn graft_grace(link: &mut Link, grace: Millis, now: Millis) -> Millis {
    let again = link.grafted_at > 0 && now < link.grafted_at.saturating_add(SUSPECT_MS);
    link.grafted_at = now.max(1);
    if again { SUSPECT_MS } else { grace }
}

/// A suspect link that pushes the message it was suspected for was only slower: the
/// suspicion is lifted.
fn lift_if_pushed(link: &mut Link, id: &MessageId) {
    if link.suspect_for.as_ref() == Some(id) {
        link.suspect_until = 0;
        link.suspect_for = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    fn tree(eager_push: bool, broadcast_tree: bool) -> Tree<u8> {
        Tree::new(TreeConfig {
            eager_push,
            broadcast_tree,
            grace: 1_000,
            graft_timeout: 100,
            announce_delay: 20,
            max_deferred_ranges: 4,
        })
    }

    /// Whether a duplicate makes the node tell the peer anything.
    fn prunes(t: &mut Tree<u8>, peer: &u8, id: &MessageId, answered: bool, now: Millis) -> bool {
        t.on_duplicate(peer, id, answered, now).0 != Redundant::Nothing
    }

    /// Tree control with the flags only.
    fn ctl(prune: bool, graft: bool) -> Control<'static> {
        Control {
            prune,
            graft,
            ..Control::default()
        }
    }

    /// The author of the messages routed where the author does not matter.
    fn au() -> PublicKey {
        Keypair::from_seed(&[9; 32]).public()
    }

    fn id(author: &PublicKey, sequence: u64) -> MessageId {
        MessageId {
            author: *author,
            sequence,
        }
    }

    fn ids(list: &[u64]) -> RangeSet {
        list.iter().copied().collect()
    }

    /// Input → the link's role and whether a prune is sent, over one link.
    #[test]
    fn roles_follow_first_copies_duplicates_and_control() {
        use Role::*;
        let author = Keypair::from_seed(&[1; 32]).public();
        // (input, time, expected role after, expected prune)
        enum In {
            Dup,
            First,
            Prune,
            Graft,
        }
        let table = [
            (In::Dup, 500, Eager, false), // in grace: kept
            (In::Dup, 1_000, Lazy, true), // grace over: pruned
            (In::Dup, 1_001, Lazy, true), // already lazy: told again, no change
            (In::First, 1_002, Eager, false),
            (In::Prune, 1_003, Lazy, false),
            (In::Graft, 1_004, Eager, false),
            (In::Dup, 2_003, Eager, false), // the peer grafted it: kept for the grace
            (In::Dup, 2_004, Lazy, true),
            (In::Graft, 3_000, Eager, false), // again within a minute
            (In::Dup, 2_999 + SUSPECT_MS, Eager, false), // kept for the minute
            (In::Dup, 3_000 + SUSPECT_MS, Lazy, true),
        ];
        let mut t = tree(true, true);
        t.connected(&1, 0);
        for (i, (input, now, role, prune)) in table.into_iter().enumerate() {
            let pruned = match input {
                In::Dup => prunes(&mut t, &1, &id(&author, i as u64), false, now),
                In::First => {
                    t.on_first_copy(&1, &id(&author, i as u64), now);
                    false
                }
                In::Prune => {
                    t.on_control(&1, &ctl(true, false), 0);
                    false
                }
                In::Graft => {
                    t.on_control(&1, &ctl(false, true), now);
                    false
                }
            };
            assert_eq!((t.role(&1), pruned), (Some(role), prune), "row {i}");
            t.check_invariants();
        }
    }

    #[test]
    fn with_the_tree_off_nothing_is_pruned_or_deferred_but_control_is_obeyed() {
        for (eager_push, broadcast_tree) in [(true, false), (false, true)] {
            let mut t = tree(eager_push, broadcast_tree);
            t.connected(&1, 0);
            let author = Keypair::from_seed(&[1; 32]).public();
            assert!(!prunes(&mut t, &1, &id(&author, 1), false, 5_000));
            t.on_control(&1, &ctl(true, false), 0);
            assert_eq!(t.role(&1), Some(Role::Lazy));
            assert!(!t.defers(&1));
            assert_eq!(t.route(&1, &au(), 0), Route::Announce);
        }
        let mut t = tree(false, true);
        t.connected(&1, 0);
        assert_eq!(
            t.route(&1, &au(), 0),
            Route::Announce,
            "no eager push: always announced"
        );
    }

    #[test]
    fn deferred_ids_come_due_at_the_graft_timeout_and_a_graft_gives_grace() {
        let author = Keypair::from_seed(&[1; 32]).public();
        let mut t = tree(true, true);
        t.connected(&1, 0);
        t.connected(&2, 0);
        t.on_control(&1, &ctl(true, false), 0);
        assert!(t.defers(&1) && !t.defers(&2));
        t.defer(&1, &author, &ids(&[1, 2]), 2_000);
        t.defer(&1, &author, &ids(&[3]), 2_050); // the deadline does not move
        assert_eq!(t.next_graft(), Some(2_100));
        assert!(t.due_grafts(2_099).is_empty());
        let due = t.due_grafts(2_100);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, 1);
        assert_eq!(due[0].1[&author], ids(&[1, 2, 3]));
        assert_eq!(t.next_graft(), None);
        let missing = id(&author, 1);
        t.grafted(&1, &missing, None, 2_100);
        assert_eq!(t.role(&1), Some(Role::Eager));
        t.arrived(&missing, &1, true, 2_100); // the grafted peer answers
        assert!(
            !prunes(&mut t, &1, &id(&author, 9), false, 3_099),
            "grace after a graft"
        );
        // Peer 2 was eager and pushed nothing of what 1 had: suspect. Its first copies
        // prune nothing; others' do.
        let other = Keypair::from_seed(&[2; 32]).public();
        t.on_first_copy(&2, &id(&other, 1), 3_100);
        assert!(
            !prunes(&mut t, &1, &id(&other, 1), false, 3_100),
            "the first copy came from a suspect link"
        );
        t.on_first_copy(&1, &id(&other, 2), 3_200);
        assert!(
            prunes(&mut t, &2, &id(&other, 2), false, 3_200),
            "the first copy came over a link not suspect"
        );
        t.on_control(&2, &ctl(false, true), 3_300); // eager again, and kept for the grace
        // Peer 2 pushes the message it was suspected for, late: only slower, suspicion lifted.
        assert!(
            !prunes(&mut t, &2, &missing, false, 3_400),
            "in the graft's grace"
        );
        t.on_first_copy(&2, &id(&other, 3), 4_400);
        assert!(
            prunes(&mut t, &1, &id(&other, 3), false, 4_400),
            "suspicion lifted: its first copies prune again"
        );
        // What it delivered first while suspect stays remembered for the rest of that time.
        assert!(!prunes(&mut t, &1, &id(&other, 1), false, 4_600));
        assert!(prunes(
            &mut t,
            &1,
            &id(&other, 1),
            false,
            2_100 + SUSPECT_MS
        ));
        t.check_invariants();
    }

    #[test]
    fn a_graft_from_the_peer_keeps_the_link_for_want_timeout_and_a_second_for_a_minute() {
        let author = Keypair::from_seed(&[1; 32]).public();
        let mut t = tree(true, true);
        t.connected(&1, 0);
        t.on_control(&1, &ctl(false, true), 5_000);
        assert!(!prunes(&mut t, &1, &id(&author, 1), false, 5_999), "grace");
        assert!(
            prunes(&mut t, &1, &id(&author, 2), false, 6_000),
            "one graft: grace only"
        );
        t.on_control(&1, &ctl(false, true), 7_000); // grafted again within the minute
        assert!(
            !prunes(&mut t, &1, &id(&author, 3), false, 7_000 + SUSPECT_MS - 1),
            "a link the peer grafted twice in a minute is kept for the minute"
        );
        assert!(prunes(
            &mut t,
            &1,
            &id(&author, 4),
            false,
            7_000 + SUSPECT_MS
        ));
        // Grafted by the peer, then by this node within the minute: kept for the minute too
        // (each end grafting in turn counts as twice).
        let later = 200_000;
        t.on_control(&1, &ctl(false, true), later);
        t.on_control(&1, &ctl(true, false), later + 500); // pruned by the peer
        t.grafted(&1, &id(&author, 5), None, later + 2_000);
        assert!(
            !prunes(
                &mut t,
                &1,
                &id(&author, 6),
                false,
                later + 2_000 + SUSPECT_MS - 1
            ),
            "grafted by both ends within a minute"
        );
        t.check_invariants();
    }

    #[test]
    fn eager_links_are_suspect_once_the_grafted_id_is_answered_and_a_made_up_one_marks_nothing() {
        let author = Keypair::from_seed(&[1; 32]).public();
        let other = Keypair::from_seed(&[2; 32]).public();
        let mut t = tree(true, true);
        for peer in 1..=6 {
            t.connected(&peer, 0);
        }
        t.on_control(&1, &ctl(true, false), 0);
        // A made-up id: grafted for, never arrives. 2's first copies still let 3 be pruned.
        t.grafted(&1, &id(&author, 7), None, 2_000);
        t.on_first_copy(&2, &id(&other, 1), 2_100);
        assert!(
            prunes(&mut t, &3, &id(&other, 1), false, 2_100),
            "nothing suspect"
        );
        // An id the eager links push after all (a predicted id, announced before it existed,
        // or a slow upstream): not answered, so nothing is suspect.
        t.grafted(&1, &id(&author, 8), None, 3_000);
        t.arrived(&id(&author, 8), &2, false, 3_050);
        t.on_first_copy(&2, &id(&other, 2), 3_100);
        assert!(
            prunes(&mut t, &4, &id(&other, 2), false, 3_100),
            "pushed: no suspect"
        );
        // A withheld one: until its answer comes nothing is suspect; once the grafted peer
        // answers, the eager links of the graft (2, 5, 6) pushed nothing of it: suspect, so
        // their first copies prune nothing.
        t.grafted(&1, &id(&author, 9), None, 4_000);
        t.on_first_copy(&2, &id(&other, 3), 4_010);
        assert!(
            prunes(&mut t, &5, &id(&other, 3), false, 4_010),
            "not answered yet"
        );
        t.arrived(&id(&author, 9), &1, true, 4_100);
        t.on_first_copy(&2, &id(&other, 4), 4_200);
        assert!(
            !prunes(&mut t, &6, &id(&other, 4), false, 4_200),
            "2 is suspect"
        );
        t.check_invariants();
    }

    #[test]
    fn later_grafts_or_a_reconnect_do_not_shed_a_pending_mark() {
        let author = Keypair::from_seed(&[1; 32]).public();
        let other = Keypair::from_seed(&[2; 32]).public();
        let mut t = tree(true, true);
        for peer in 1..=5 {
            t.connected(&peer, 0);
        }
        t.on_control(&1, &ctl(true, false), 0);
        // 2 withholds m; grafts for made-up ids follow before m's answer comes.
        let m = id(&author, 1);
        t.grafted(&1, &m, None, 2_000);
        for k in 0..MAX_PENDING as u64 - 1 {
            t.grafted(&1, &id(&author, 100 + k), None, 2_010 + k);
        }
        t.arrived(&m, &1, true, 2_100);
        t.on_first_copy(&2, &id(&other, 1), 2_200);
        assert!(
            !prunes(&mut t, &3, &id(&other, 1), false, 2_200),
            "2 is suspect"
        );
        // A link that leaves while a mark is pending comes back suspect.
        let m2 = id(&author, 2);
        t.grafted(&1, &m2, None, 3_000);
        t.disconnected(&4, 3_050);
        t.connected(&4, 3_060);
        t.on_first_copy(&4, &id(&other, 2), 3_070);
        assert!(
            !prunes(&mut t, &5, &id(&other, 2), false, 4_100),
            "4 is suspect"
        );
        t.check_invariants();
    }

    #[test]
    fn when_ids_from_suspect_links_are_forgotten_no_link_is_pruned_while_one_is_suspect() {
        let author = Keypair::from_seed(&[1; 32]).public();
        let other = Keypair::from_seed(&[2; 32]).public();
        let mut t = tree(true, true);
        for peer in [1, 2, 3] {
            t.connected(&peer, 0);
        }
        t.on_control(&1, &ctl(true, false), 0);
        t.grafted(&1, &id(&author, 1), None, 2_000);
        t.arrived(&id(&author, 1), &1, true, 2_010); // 2 and 3 are suspect
        for sequence in 1..=MAX_FROM_SUSPECT as u64 + 1 {
            t.on_first_copy(&2, &id(&other, sequence), 2_100);
        }
        // The first id went to make room; its duplicate still prunes nothing.
        assert!(!prunes(&mut t, &3, &id(&other, 1), false, 2_200));
        // Ids whose suspicion ended make room without forgetting anything: past it, a new
        // suspicion that records one id leaves the other links' duplicates free to prune.
        let later = 2_100 + 2 * SUSPECT_MS;
        t.on_control(&2, &ctl(false, false), later);
        t.on_control(&3, &ctl(false, false), later);
        t.grafted(&1, &id(&author, 2), None, later);
        t.arrived(&id(&author, 2), &1, true, later); // 2 and 3 suspect again
        t.on_first_copy(&2, &id(&other, 9_000), later + 1);
        t.on_first_copy(&1, &id(&other, 9_001), later + 1);
        assert!(
            prunes(&mut t, &3, &id(&other, 9_001), false, later + 2),
            "the first copy came over a link not suspect"
        );
        t.check_invariants();
    }

    /// A link past its grace whose peer has sent nothing is pushed [`PUSHES_TO_EARN`]
    /// messages more, then demoted; a peer that sent any frame keeps its pushes.
    #[test]
    fn a_link_whose_peer_never_sent_anything_is_demoted_after_a_few_pushes() {
        let mut t = tree(true, true);
        t.connected(&1, 0);
        t.connected(&2, 0);
        t.on_control(&1, &ctl(false, false), 10); // an empty frame: the peer is heard
        for peer in [1, 2] {
            assert_eq!(t.route(&peer, &au(), 999), Route::Push, "in grace");
        }
        for _ in 0..PUSHES_TO_EARN {
            assert_eq!(t.route(&2, &au(), 1_000), Route::Push);
        }
        assert_eq!(t.route(&2, &au(), 1_000), Route::Demote);
        assert_eq!(t.role(&2), Some(Role::Lazy));
        assert_eq!(t.route(&2, &au(), 1_000), Route::Announce);
        for _ in 0..=PUSHES_TO_EARN {
            assert_eq!(t.route(&1, &au(), 1_000), Route::Push, "heard");
        }
        // A link that comes back within ROLE_MEMORY_MS is heard if the last one was; one
        // whose peer never sent anything is not (and starts lazy: it was demoted).
        t.disconnected(&1, 2_000);
        t.disconnected(&2, 2_000);
        t.connected(&1, 2_000);
        t.connected(&2, 2_000);
        assert_eq!(t.role(&2), Some(Role::Lazy));
        for _ in 0..=PUSHES_TO_EARN {
            assert_eq!(
                t.route(&1, &au(), 3_000),
                Route::Push,
                "heard on its last link"
            );
        }
        t.on_control(&2, &ctl(false, true), 2_100); // grafted by an unheard peer: now heard
        t.disconnected(&2, 2_200);
        t.connected(&2, 2_200 + ROLE_MEMORY_MS); // too late: forgotten
        for _ in 0..PUSHES_TO_EARN {
            assert_eq!(t.route(&2, &au(), 4_000 + ROLE_MEMORY_MS), Route::Push);
        }
        assert_eq!(t.route(&2, &au(), 4_000 + ROLE_MEMORY_MS), Route::Demote);
        // With the tree off, nothing is demoted.
        let mut off = tree(true, false);
        off.connected(&1, 0);
        for _ in 0..=PUSHES_TO_EARN {
            assert_eq!(off.route(&1, &au(), 5_000), Route::Push);
        }
        t.check_invariants();
        off.check_invariants();
    }

    #[test]
    fn unproven_eager_links_beyond_the_caps_are_trimmed_worst_ranked_first() {
        let a = Keypair::from_seed(&[7; 32]).public();
        let mut t = tree(true, true);
        for peer in 1..=6 {
            t.connected(&peer, peer as Millis); // 6 is the newest
        }
        let no_rank = |_: &u8| Standing::Unknown;
        assert!(
            t.trim(999, &au(), |_| false, |_| false, no_rank).is_empty(),
            "all in grace"
        );
        // Past the grace: 1 delivered a new message, so it is proven; of the other five, two are
        // kept: the newest connections.
        t.proved(&1, 1_500);
        let trimmed = t.trim(1_500, &au(), |_| false, |_| false, no_rank);
        assert_eq!(trimmed, vec![4, 3, 2]);
        for peer in trimmed {
            assert_eq!(t.role(&peer), Some(Role::Lazy));
        }
        // The track record ranks before age; the message's deliverer is not counted.
        t.connected(&7, 2_000);
        t.connected(&8, 2_000);
        let rank = |p: &u8| {
            if *p == 5 {
                Standing::Proven // elsewhere
            } else {
                Standing::Unknown
            }
        };
        let trimmed = t.trim(3_100, &au(), |p| *p == 8, |_| false, rank);
        assert_eq!(
            trimmed,
            vec![6],
            "5 (ranked) and 7 (newest) kept, 8 not counted"
        );
        // A new message proves a link for PROVEN_MS or PROVEN_MESSAGES new messages, whichever
        // lasts longer.
        // (1's was the node's first; 5 and 8 are the two plain links.)
        for _ in 1..PROVEN_MESSAGES {
            t.proved(&7, 3_200);
        }
        assert!(
            t.trim(3_200 + PROVEN_MS, &au(), |_| false, |_| false, no_rank)
                .is_empty(),
            "1 by count"
        );
        t.proved(&7, 3_300);
        // 1 is unproven now, but its delivery ranks it above 5 and 8 (8 the newer).
        assert_eq!(
            t.trim(3_200 + PROVEN_MS, &au(), |_| false, |_| false, no_rank),
            vec![5]
        );
        // A peer that grafts is kept apart from the two plain links, up to MAX_CALLED_EAGER.
        for peer in 20..20 + MAX_CALLED_EAGER as u8 + 2 {
            t.connected(&peer, 4_000);
            t.on_control(&peer, &ctl(false, true), 4_000);
        }
        let trimmed = t.trim(4_000 + SUSPECT_MS, &au(), |_| false, |_| false, no_rank);
        assert_eq!(trimmed.len(), 2, "{trimmed:?}");
        assert!(trimmed.iter().all(|p| *p >= 20));
        // A graft's grace keeps no called link out of the count: a trimmed peer that grafts
        // again goes again, being the latest graft beyond the eight.
        let later = 4_000 + SUSPECT_MS;
        t.on_control(&28, &ctl(false, true), later);
        assert_eq!(
            t.trim(later, &au(), |_| false, |_| false, no_rank),
            vec![28]
        );
        // A link this node grafted is plain, counted once its grace is over; a congested link
        // goes first (the plain links are 1, 8, 40 and 41; 1 delivered, 40 is the newest).
        t.connected(&40, later);
        t.grafted(&40, &id(&a, 500), None, later);
        t.connected(&41, later);
        assert!(
            t.trim(later + 999, &au(), |_| false, |_| false, no_rank)
                .is_empty()
        );
        let congested = |p: &u8| *p == 41;
        assert_eq!(
            t.trim(later + 2_000, &au(), |_| false, congested, no_rank),
            vec![8, 41]
        );
        // This node's second graft of a link within the minute keeps duplicates from pruning it
        // for the minute, but the caps count it after `want_timeout` like any link: a peer
        // that gets this node to graft it over and over gains no place.
        let mut h = tree(true, true);
        for peer in 1..=3 {
            h.connected(&peer, 0);
        }
        h.grafted(&3, &id(&a, 1), None, 2_000);
        h.grafted(&3, &id(&a, 2), None, 2_500);
        assert!(
            h.trim(3_400, &au(), |_| false, |_| false, no_rank)
                .is_empty()
        );
        assert_eq!(h.trim(3_600, &au(), |_| false, |_| false, no_rank), vec![3]);
        h.check_invariants();
        // With the tree off, nothing is trimmed.
        let mut off = tree(true, false);
        for peer in 1..=6 {
            off.connected(&peer, 0);
        }
        assert!(
            off.trim(5_000, &au(), |_| false, |_| false, no_rank)
                .is_empty()
        );
        t.check_invariants();
    }

    #[test]
    fn a_peer_that_leaves_takes_its_timers_and_announcements_with_it() {
        let author = Keypair::from_seed(&[1; 32]).public();
        let mut t = tree(true, true);
        t.connected(&1, 0);
        t.on_control(&1, &ctl(true, false), 0);
        t.defer(&1, &author, &ids(&[1]), 10);
        t.announce_later(&1, 10);
        assert_eq!((t.next_graft(), t.next_announce()), (Some(110), Some(30)));
        t.disconnected(&1, 20);
        assert_eq!(t.next_graft(), None);
        assert!(t.take_announcements().is_empty());
        t.check_invariants();
    }

    #[test]
    fn lazy_announcements_are_batched_over_the_announce_delay() {
        let mut t = tree(true, true);
        t.connected(&1, 0);
        t.connected(&2, 0);
        t.announce_later(&1, 100);
        t.announce_later(&2, 115); // joins the batch due at 120
        assert_eq!(t.next_announce(), Some(120));
        assert!(!t.announces_at_once());
        assert_eq!(t.take_announcements(), BTreeSet::from([1, 2]));
        assert_eq!(t.next_announce(), None);
        let mut rounds_only = tree(false, false);
        rounds_only.connected(&1, 0);
        rounds_only.announce_later(&1, 100);
        assert_eq!(
            rounds_only.next_announce(),
            None,
            "without eager push: in rounds"
        );
    }

    /// A peer that let a want of it lapse (failed) holds no plain place: liars that announce
    /// what they never answer get no pushes past their grace.
    #[test]
    fn a_failed_peer_holds_no_plain_place() {
        let mut t = tree(true, true);
        for peer in 1..=3 {
            t.connected(&peer, 0);
        }
        let standing = |p: &u8| {
            if *p == 3 {
                Standing::Failed
            } else {
                Standing::Unknown
            }
        };
        // Two plain places, three unproven links: the failed one goes, though it is newest.
        assert_eq!(
            t.trim(2_000, &au(), |_| false, |_| false, standing),
            vec![3]
        );
        assert!(
            t.trim(2_000, &au(), |_| false, |_| false, standing)
                .is_empty()
        );
        // Alone, it still holds none.
        let mut alone = tree(true, true);
        alone.connected(&3, 0);
        assert_eq!(
            alone.trim(2_000, &au(), |_| false, |_| false, standing),
            vec![3]
        );
        t.check_invariants();
        alone.check_invariants();
    }

    fn key(seed: u8) -> PublicKey {
        Keypair::from_seed(&[seed; 32]).public()
    }

    #[test]
    fn author_links_push_their_authors_over_a_lazy_link_until_ended() {
        let (x, y) = (key(1), key(2));
        let mut t = tree(true, true);
        t.connected(&1, 0);
        // The peer grafts for x, then prunes the link (for another author's duplicate).
        let graft_x = Control {
            graft: true,
            graft_authors: &[x],
            ..Control::default()
        };
        t.on_control(&1, &graft_x, 10);
        t.on_control(&1, &ctl(true, false), 20);
        assert_eq!(t.role(&1), Some(Role::Lazy));
        assert_eq!(
            t.route(&1, &x, 30),
            Route::Push,
            "x's messages are still pushed"
        );
        assert_eq!(t.route(&1, &y, 30), Route::Announce, "the others' are not");
        let end_x = Control {
            prune_authors: &[x],
            ..Control::default()
        };
        t.on_control(&1, &end_x, 40);
        assert_eq!(t.route(&1, &x, 50), Route::Announce, "ended by name");
        // At most MAX_AUTHOR_LINKS: the one pushed least recently goes.
        let keys: Vec<PublicKey> = (0..=MAX_AUTHOR_LINKS as u8).map(|i| key(100 + i)).collect();
        for (i, k) in keys[..MAX_AUTHOR_LINKS].iter().enumerate() {
            let ask = Control {
                graft_authors: std::slice::from_ref(k),
                ..Control::default()
            };
            t.on_control(&1, &ask, 100 + i as Millis);
        }
        assert_eq!(
            t.route(&1, &keys[0], 200),
            Route::Push,
            "used: now the latest"
        );
        let one_more = Control {
            graft_authors: &keys[MAX_AUTHOR_LINKS..],
            ..Control::default()
        };
        t.on_control(&1, &one_more, 300);
        assert_eq!(
            t.route(&1, &keys[1], 400),
            Route::Announce,
            "least recently used"
        );
        assert_eq!(t.route(&1, &keys[0], 400), Route::Push);
        assert_eq!(t.route(&1, &keys[MAX_AUTHOR_LINKS], 400), Route::Push);
        t.check_invariants();
        // A reconnect starts with none.
        t.connected(&1, 500);
        t.on_control(&1, &ctl(true, false), 500);
        assert_eq!(t.route(&1, &keys[0], 600), Route::Announce);
        t.check_invariants();
    }

    #[test]
    fn a_duplicate_over_an_asked_author_link_ends_that_author_alone() {
        let (x, y) = (key(1), key(2));
        let mut t = tree(true, true);
        t.connected(&1, 0);
        t.on_control(&1, &ctl(true, false), 0);
        t.defer(&1, &x, &ids(&[1]), 2_000);
        assert_eq!(t.due_grafts(2_100).len(), 1);
        t.grafted(&1, &id(&x, 1), Some(&id(&x, 1)), 2_100); // eager here, x asked for
        t.on_control(&1, &ctl(true, false), 2_200); // the peer prunes its side: lazy here
        assert_eq!(t.role(&1), Some(Role::Lazy));
        // A duplicate of x over it: that author link alone is redundant.
        assert_eq!(
            t.on_duplicate(&1, &id(&x, 3), false, 2_400).0,
            Redundant::Author
        );
        // No longer counted as asked: told again, with the author (the peer may still push
        // it by its author link). A first copy makes the link eager, as any.
        assert_eq!(
            t.on_duplicate(&1, &id(&x, 4), false, 2_500).0,
            Redundant::LinkAndAuthor
        );
        t.on_first_copy(&1, &id(&x, 5), 2_600);
        assert_eq!(t.role(&1), Some(Role::Eager));
        // A duplicate of another author over an eager link, past its grace: the link.
        assert_eq!(
            t.on_duplicate(&1, &id(&y, 1), false, 3_200).0,
            Redundant::Link
        );
        assert_eq!(t.role(&1), Some(Role::Lazy));
        t.check_invariants();
    }

    #[test]
    fn author_links_count_as_grafted_links_in_the_caps() {
        let (x, y) = (key(1), key(2));
        let mut t = tree(true, true);
        let ask_x = Control {
            prune: true,
            graft_authors: &[x],
            ..Control::default()
        };
        for peer in 1..=12 {
            t.connected(&peer, 0);
            t.on_control(&peer, &ask_x, 10);
        }
        let no_rank = |_: &u8| Standing::Unknown;
        let pruned = t.trim(2_000, &x, |_| false, |_| false, no_rank);
        assert!(pruned.is_empty(), "lazy links are not sent prune");
        let pushed = (1..=12u8)
            .filter(|p| t.route(p, &x, 2_000) == Route::Push)
            .count();
        assert_eq!(pushed, MAX_CALLED_EAGER, "a cap of their own");
        assert!(
            (1..=12u8).all(|p| t.route(&p, &y, 2_000) == Route::Announce),
            "other authors' messages are announced"
        );
        t.check_invariants();
    }

    #[test]
    fn an_author_link_ends_when_the_shared_tree_brings_the_grafted_id_after_all() {
        let x = key(1);
        let mut t = tree(true, true);
        t.connected(&1, 0);
        t.connected(&2, 0);
        t.on_control(&1, &ctl(true, false), 0);
        let grafted = id(&x, 1);
        t.grafted(&1, &grafted, Some(&grafted), 2_000);
        // Peer 1 answers; then peer 2's push of the same id comes: only slower.
        let (_, slower) = t.on_duplicate(&2, &grafted, false, 2_050);
        assert_eq!(slower, Some(1), "x's author link at peer 1 ends");
        // Once only; and a duplicate of another id names no one.
        assert_eq!(t.on_duplicate(&2, &grafted, false, 2_060).1, None);
        assert_eq!(t.on_duplicate(&2, &id(&x, 2), false, 2_070).1, None);
        t.check_invariants();
    }
}
