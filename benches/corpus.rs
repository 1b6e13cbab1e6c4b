//! Deterministic test corpora for the benches and examples: a `pg_dump`-style SQL text dump, its
//! "next night" variant, and a "vault" of uploaded files. No I/O and no external crates; the
//! same seed gives the same bytes on every platform.
//!
//! Included as a module (`mod corpus;` from `benches/stages.rs`, `#[path]` from examples), so
//! each user compiles only the part it calls; the rest would be dead code there.
//!
//! # The SQL dump
//!
//! Five tables (`customers`, `events`, `order_items`, `orders`, `products`) written the way
//! `pg_dump` writes plain format: a preamble of `SET`s and `CREATE TABLE`s, one
//! `COPY ... FROM stdin;` block of tab-separated rows per table (NULL as `\N`), then sequence
//! `setval`s, constraints and indexes. Rows carry ids, names, e-mail addresses, timestamps,
//! amounts and free-text notes. A row's text is a pure function of (seed, table, id, night of
//! its insert, night of its last write), so the model stores 16 bytes per row, not the row.
//!
//! # The change model ("next night")
//!
//! `pg_dump` emits a table's rows in heap order: page by page, and within a page in line
//! pointer order. The model keeps each table as a list of 8 KiB heap pages of rows. On the
//! night after, `fraction` of each table's live rows (2% by default) see one change each:
//!
//! * **UPDATE** (most changes): PostgreSQL never updates in place; it writes a new row version
//!   and marks the old one dead. So in the next dump the row disappears from its old position
//!   and the new version (with new `updated_at`, status, amounts...) appears where the new
//!   version was written: on the same page when it had room (a HOT update; 15% here), in free
//!   space on another page found through the free space map (15%), and otherwise at the end of
//!   the heap (70%). Updates of the same night to the end of the heap therefore pile up, in
//!   update order, after the last original page.
//! * **INSERT**: a new id, at the end of the heap (85%) or in free space on some page (15%).
//!
//! Free space exists where vacuum removed the dead rows of earlier nights' updates and
//! deletes, so the free space map sends new rows to the same region of the heap that the
//! table's updates and deletes hit: anywhere for uniformly updated tables, the head of an
//! append-only log pruned from its oldest end, the recent pages of a table whose recent rows
//! change.
//! * **DELETE**: the row is gone from the next dump.
//!
//! Which rows change depends on the [`ChangeModel`]:
//!
//! * [`ChangeModel::Uniform`]: in every table 85% updates, 12% inserts, 3% deletes, each update
//!   and delete hitting a uniformly random row. The worst case for deduplication: 2% of rows is
//!   one changed row every ~7 KB of dump.
//! * [`ChangeModel::Skewed`]: the same 2% of rows per table, placed as applications usually
//!   place them: `events` is an append-only log (97% inserts, 3% deletes of the oldest rows by a
//!   retention job); `orders` and `order_items` take inserts plus updates of recent rows (status
//!   changes, picked with an exponential bias toward the end of the heap); `customers` and
//!   `products` take updates of random rows (address and price changes) and a few inserts.

#![allow(dead_code)]

/// SplitMix64: small, fast, and good enough for synthetic data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for the tuple `parts`, independent of any other tuple's.
    fn keyed(parts: &[u64]) -> Self {
        Self(
            parts
                .iter()
                .fold(0x5EED_C157_A000_0001, |h, &p| mix64(h ^ mix64(p))),
        )
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is far below what a bench sees).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// Log-uniform in `lo..hi`: as many files of 1-10 KiB as of 1-10 MiB.
    pub fn log_uniform(&mut self, lo: usize, hi: usize) -> usize {
        let (l, h) = ((lo as f64).ln(), (hi as f64).ln());
        ((l + self.unit() * (h - l)).exp() as usize).clamp(lo, hi)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `n` incompressible bytes.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0; n];
    Rng::new(seed).fill(&mut out);
    out
}

/// Exactly `size` bytes of SQL dump text (the last row is cut off where the size ends).
pub fn sql_dump(size: usize, seed: u64) -> Vec<u8> {
    let mut out = SqlDump::generate(size + size / 8 + 4096, seed).render();
    out.truncate(size);
    out
}

/// Which rows the next night changes; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeModel {
    Uniform,
    Skewed,
}

/// The share of rows changed between two nights unless told otherwise.
pub const NIGHTLY_CHANGE: f64 = 0.02;

/// One night's database, as `pg_dump` would see it.
#[derive(Debug, Clone)]
pub struct SqlDump {
    seed: u64,
    night: u32,
    tables: Vec<Table>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Customers,
    Events,
    OrderItems,
    Orders,
    Products,
}

/// Heap order: the pages, each a list of rows in line pointer order.
#[derive(Debug, Clone)]
struct Table {
    kind: Kind,
    pages: Vec<Vec<Row>>,
    rows_per_page: usize,
    next_id: u64,
    secs_per_id: u64,
}

/// `night` is when this version was written, `born` when the row was inserted; 0 for the
/// initial load.
#[derive(Debug, Clone, Copy)]
struct Row {
    id: u64,
    night: u32,
    born: u32,
}

/// 2019-01-01 00:00 UTC: ids start here.
const EPOCH: u64 = 1_546_300_800;
/// 2025-06-01 00:00 UTC: the first dump; night `n` is `n` days later.
const FIRST_NIGHT: u64 = 1_748_736_000;
const DAY: u64 = 86_400;
/// PostgreSQL's page and per-tuple overhead (tuple header and line pointer).
const PAGE: usize = 8192 - 24;
const TUPLE_OVERHEAD: usize = 28;

#[derive(Debug, Clone, Copy)]
enum Pick {
    Uniform,
    /// Exponentially biased toward the end of the heap, mean distance this share of the table.
    Recent(f64),
    Oldest,
}

/// Shares of a table's changes (deletes take the rest), and the region of the heap they hit:
/// the rows updates and deletes pick, and so where earlier nights left free space.
#[derive(Debug, Clone, Copy)]
struct Profile {
    update: f64,
    insert: f64,
    region: Pick,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Customers,
        Kind::Events,
        Kind::OrderItems,
        Kind::Orders,
        Kind::Products,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Customers => "customers",
            Kind::Events => "events",
            Kind::OrderItems => "order_items",
            Kind::Orders => "orders",
            Kind::Products => "products",
        }
    }

    /// Share of the dump's bytes.
    fn share(self) -> f64 {
        match self {
            Kind::Customers => 0.14,
            Kind::Events => 0.42,
            Kind::OrderItems => 0.18,
            Kind::Orders => 0.24,
            Kind::Products => 0.02,
        }
    }

    fn columns(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Kind::Customers => &[
                ("id", "bigint NOT NULL"),
                ("first_name", "text NOT NULL"),
                ("last_name", "text NOT NULL"),
                ("email", "text NOT NULL"),
                ("phone", "text"),
                ("country_code", "character(2) NOT NULL"),
                ("created_at", "timestamp with time zone NOT NULL"),
                ("updated_at", "timestamp with time zone NOT NULL"),
                ("is_active", "boolean DEFAULT true NOT NULL"),
                ("notes", "text"),
            ],
            Kind::Events => &[
                ("id", "bigint NOT NULL"),
                ("occurred_at", "timestamp with time zone NOT NULL"),
                ("actor_id", "bigint"),
                ("action", "text NOT NULL"),
                ("ip_address", "inet"),
                ("user_agent", "text"),
                ("payload", "jsonb"),
            ],
            Kind::OrderItems => &[
                ("id", "bigint NOT NULL"),
                ("order_id", "bigint NOT NULL"),
                ("product_id", "bigint NOT NULL"),
                ("quantity", "integer NOT NULL"),
                ("unit_price", "numeric(12,2) NOT NULL"),
                ("discount", "numeric(5,2) DEFAULT 0 NOT NULL"),
            ],
            Kind::Orders => &[
                ("id", "bigint NOT NULL"),
                ("customer_id", "bigint NOT NULL"),
                ("status", "text NOT NULL"),
                ("currency", "character(3) NOT NULL"),
                ("total_amount", "numeric(12,2) NOT NULL"),
                ("created_at", "timestamp with time zone NOT NULL"),
                ("updated_at", "timestamp with time zone NOT NULL"),
                ("shipping_address", "text"),
                ("note", "text"),
            ],
            Kind::Products => &[
                ("id", "bigint NOT NULL"),
                ("sku", "text NOT NULL"),
                ("name", "text NOT NULL"),
                ("description", "text"),
                ("price", "numeric(12,2) NOT NULL"),
                ("stock", "integer NOT NULL"),
                ("updated_at", "timestamp with time zone NOT NULL"),
            ],
        }
    }

    fn profile(self, model: ChangeModel) -> Profile {
        use Pick::*;
        let p = |update, insert, region| Profile {
            update,
            insert,
            region,
        };
        match (model, self) {
            (ChangeModel::Uniform, _) => p(0.85, 0.12, Uniform),
            (ChangeModel::Skewed, Kind::Customers) => p(0.70, 0.28, Uniform),
            (ChangeModel::Skewed, Kind::Events) => p(0.0, 0.97, Oldest),
            (ChangeModel::Skewed, Kind::OrderItems) => p(0.08, 0.90, Recent(0.03)),
            (ChangeModel::Skewed, Kind::Orders) => p(0.65, 0.33, Recent(0.03)),
            (ChangeModel::Skewed, Kind::Products) => p(0.95, 0.05, Uniform),
        }
    }
}

impl SqlDump {
    /// The first night: a freshly loaded database whose dump is about `size` bytes.
    pub fn generate(size: usize, seed: u64) -> Self {
        let tables = Kind::ALL
            .iter()
            .map(|&kind| Table::load(kind, (size as f64 * kind.share()) as usize, seed))
            .collect();
        Self {
            seed,
            night: 0,
            tables,
        }
    }

    /// The database one night later, with `fraction` of each table's rows changed.
    pub fn next_night(&self, model: ChangeModel, fraction: f64) -> Self {
        let mut next = self.clone();
        next.night += 1;
        let mut rng = Rng::keyed(&[self.seed, u64::from(next.night), model as u64]);
        for t in &mut next.tables {
            t.change(model, fraction, next.night, &mut rng);
        }
        next
    }

    /// The plain-format dump text.
    pub fn render(&self) -> Vec<u8> {
        let rows: usize = self.tables.iter().map(Table::live).sum();
        let mut out = Vec::with_capacity(rows * 150 + 16384);
        self.preamble(&mut out);
        for t in &self.tables {
            let k = t.kind;
            put(&mut out, "--\n-- Data for Name: ");
            put(&mut out, k.name());
            put(
                &mut out,
                "; Type: TABLE DATA; Schema: public; Owner: app\n--\n\n",
            );
            put(&mut out, "COPY public.");
            put(&mut out, k.name());
            put(&mut out, " (");
            for (i, (c, _)) in k.columns().iter().enumerate() {
                if i > 0 {
                    put(&mut out, ", ");
                }
                put(&mut out, c);
            }
            put(&mut out, ") FROM stdin;\n");
            for row in t.pages.iter().flatten() {
                t.render_row(*row, self.seed, &mut out);
            }
            put(&mut out, "\\.\n\n\n");
        }
        self.postamble(&mut out);
        out
    }

    fn preamble(&self, out: &mut Vec<u8>) {
        put(
            out,
            "--\n-- PostgreSQL database dump\n--\n\n\
             -- Dumped from database version 16.4 (Debian 16.4-1.pgdg120+2)\n\
             -- Dumped by pg_dump version 16.4 (Debian 16.4-1.pgdg120+2)\n\n\
             SET statement_timeout = 0;\nSET lock_timeout = 0;\n\
             SET idle_in_transaction_session_timeout = 0;\nSET client_encoding = 'UTF8';\n\
             SET standard_conforming_strings = on;\n\
             SELECT pg_catalog.set_config('search_path', '', false);\n\
             SET check_function_bodies = false;\nSET xmloption = content;\n\
             SET client_min_messages = warning;\nSET row_security = off;\n\n\
             SET default_tablespace = '';\n\nSET default_table_access_method = heap;\n\n",
        );
        for t in &self.tables {
            let n = t.kind.name();
            for s in [
                "--\n-- Name: ",
                n,
                "; Type: TABLE; Schema: public; Owner: app\n--\n\n",
            ] {
                put(out, s);
            }
            for s in ["CREATE TABLE public.", n, " (\n"] {
                put(out, s);
            }
            let cols = t.kind.columns();
            for (i, (c, ty)) in cols.iter().enumerate() {
                for s in [
                    "    ",
                    c,
                    " ",
                    ty,
                    if i + 1 < cols.len() { ",\n" } else { "\n" },
                ] {
                    put(out, s);
                }
            }
            for s in [");\n\n\nALTER TABLE public.", n, " OWNER TO app;\n\n"] {
                put(out, s);
            }
            for s in ["CREATE SEQUENCE public.", n, "_id_seq\n    START WITH 1\n"] {
                put(out, s);
            }
            put(
                out,
                "    INCREMENT BY 1\n    NO MINVALUE\n    NO MAXVALUE\n    CACHE 1;\n\n",
            );
        }
    }

    fn postamble(&self, out: &mut Vec<u8>) {
        for t in &self.tables {
            let n = t.kind.name();
            for s in [
                "--\n-- Name: ",
                n,
                "_id_seq; Type: SEQUENCE SET; Schema: public\n--\n\n",
            ] {
                put(out, s);
            }
            for s in ["SELECT pg_catalog.setval('public.", n, "_id_seq', "] {
                put(out, s);
            }
            put_u64(out, t.next_id - 1);
            put(out, ", true);\n\n\n");
        }
        for t in &self.tables {
            let n = t.kind.name();
            for s in ["ALTER TABLE ONLY public.", n, "\n    ADD CONSTRAINT ", n] {
                put(out, s);
            }
            put(out, "_pkey PRIMARY KEY (id);\n\n");
        }
        put(
            out,
            "CREATE INDEX events_occurred_at_idx ON public.events USING btree (occurred_at);\n\n\
             CREATE INDEX orders_customer_id_idx ON public.orders USING btree (customer_id);\n\n\
             CREATE UNIQUE INDEX customers_email_key ON public.customers USING btree (email);\n\n\
             --\n-- PostgreSQL database dump complete\n--\n\n",
        );
    }
}

impl Table {
    fn load(kind: Kind, bytes: usize, seed: u64) -> Self {
        let mut t = Self {
            kind,
            pages: Vec::new(),
            rows_per_page: 1,
            next_id: 1,
            secs_per_id: 60,
        };
        // Size rows from a sample (timestamps are fixed width, so the guess of secs_per_id
        // does not change lengths); twice, the second time with ids of the final width.
        let mut n = 1;
        let mut avg = 1;
        for _ in 0..2 {
            let mut sample = Vec::new();
            for id in n / 2..n / 2 + 512 {
                let row = Row {
                    id,
                    night: 0,
                    born: 0,
                };
                t.render_row(row, seed, &mut sample);
            }
            avg = (sample.len() / 512).max(1);
            n = (bytes / avg).max(1) as u64;
        }
        t.rows_per_page = (PAGE / (avg + TUPLE_OVERHEAD)).max(1);
        t.secs_per_id = ((FIRST_NIGHT - EPOCH) / n).max(1);
        for _ in 0..n {
            let id = t.next_id;
            t.next_id += 1;
            t.push_tail(Row {
                id,
                night: 0,
                born: 0,
            });
        }
        t
    }

    fn live(&self) -> usize {
        self.pages.iter().map(Vec::len).sum()
    }

    fn push_tail(&mut self, row: Row) {
        match self.pages.last_mut() {
            Some(p) if p.len() < self.rows_per_page => p.push(row),
            _ => self.pages.push(vec![row]),
        }
    }

    fn change(&mut self, model: ChangeModel, fraction: f64, night: u32, rng: &mut Rng) {
        let prof = self.kind.profile(model);
        let n = (self.live() as f64 * fraction).round() as usize;
        for _ in 0..n {
            let u = rng.unit();
            if u < prof.update {
                let Some((page, slot)) = self.pick(prof.region, rng) else {
                    continue;
                };
                let mut row = self.pages[page].remove(slot);
                row.night = night;
                self.place(row, Some(page), prof.region, rng);
            } else if u < prof.update + prof.insert {
                let row = Row {
                    id: self.next_id,
                    night,
                    born: night,
                };
                self.next_id += 1;
                self.place(row, None, prof.region, rng);
            } else if let Some((page, slot)) = self.pick(prof.region, rng) {
                self.pages[page].remove(slot);
            }
        }
    }

    /// A live row's (page, slot), or `None` when the table is empty.
    fn pick(&self, pick: Pick, rng: &mut Rng) -> Option<(usize, usize)> {
        let n = self.pages.len() as u64;
        for _ in 0..64 {
            let page = match pick {
                Pick::Uniform => rng.below(n) as usize,
                Pick::Recent(share) => {
                    // Inverse-CDF exponential with mean `share` of the table.
                    let back = -(1.0 - rng.unit()).ln() * share * n as f64;
                    (n - 1).saturating_sub(back as u64) as usize
                }
                Pick::Oldest => self.pages.iter().position(|p| !p.is_empty())?,
            };
            let len = self.pages[page].len() as u64;
            if len > 0 {
                let slot = match pick {
                    Pick::Oldest => 0,
                    _ => rng.below(len) as usize,
                };
                return Some((page, slot));
            }
        }
        None
    }

    /// Where PostgreSQL writes a new row version; see the module documentation.
    /// `home` is the page of the version an update replaces; `None` for an insert.
    fn place(&mut self, row: Row, home: Option<usize>, free_space: Pick, rng: &mut Rng) {
        let u = rng.unit();
        let page = match home {
            Some(page) if u < 0.15 => Some(page),
            Some(_) if u < 0.30 => self.pick(free_space, rng).map(|(page, _)| page),
            None if u < 0.15 => self.pick(free_space, rng).map(|(page, _)| page),
            _ => None,
        };
        match page {
            Some(page) => self.pages[page].push(row),
            None => self.push_tail(row),
        }
    }

    fn render_row(&self, row: Row, seed: u64, out: &mut Vec<u8>) {
        let k = self.kind as u64;
        // Fields that never change come from `s`; those an UPDATE rewrites come from `m`.
        let mut s = Rng::keyed(&[seed, k, row.id]);
        let mut m = Rng::keyed(&[seed, k, row.id, u64::from(row.night) + 1]);
        let created = match row.born {
            0 => EPOCH + row.id * self.secs_per_id + s.below(self.secs_per_id),
            n => FIRST_NIGHT + u64::from(n - 1) * DAY + s.below(DAY),
        };
        let updated = match row.night {
            0 => created + m.below(FIRST_NIGHT.saturating_sub(created).max(1)),
            n => (FIRST_NIGHT + u64::from(n - 1) * DAY + m.below(DAY)).max(created),
        };
        put_u64(out, row.id);
        tab(out);
        match self.kind {
            Kind::Customers => {
                let first = s.pick(FIRST_NAMES);
                let last = s.pick(LAST_NAMES);
                put(out, first);
                tab(out);
                put(out, last);
                tab(out);
                put_lower(out, first);
                put(out, ".");
                put_lower(out, last);
                put_u64(out, s.below(100));
                put(out, "@");
                put(out, m.pick(DOMAINS));
                tab(out);
                if m.chance(0.15) {
                    null(out);
                } else {
                    put(out, "+");
                    put_u64(out, s.range(1, 99));
                    put(out, " ");
                    put_pad(out, s.below(1000), 3);
                    put(out, " ");
                    put_pad(out, s.below(1_000_000), 6);
                }
                tab(out);
                put(out, s.pick(COUNTRIES));
                tab(out);
                put_ts(out, created, s.below(1_000_000));
                tab(out);
                put_ts(out, updated, m.below(1_000_000));
                tab(out);
                put(out, if m.chance(0.92) { "t" } else { "f" });
                tab(out);
                if m.chance(0.6) {
                    null(out);
                } else {
                    put_words(out, &mut m, 3, 24);
                }
            }
            Kind::Events => {
                put_ts(out, created, s.below(1_000_000));
                tab(out);
                if s.chance(0.05) {
                    null(out);
                } else {
                    put_u64(out, s.range(1, 400_000));
                }
                tab(out);
                let action = s.pick(ACTIONS);
                put(out, action);
                tab(out);
                for i in 0..4 {
                    if i > 0 {
                        put(out, ".");
                    }
                    put_u64(out, s.range(1, 254));
                }
                tab(out);
                put(out, s.pick(USER_AGENTS));
                tab(out);
                put(out, "{\"path\": \"/api/v2/");
                put(out, s.pick(RESOURCES));
                put(out, "/");
                put_u64(out, s.range(1, 2_000_000));
                put(out, "\", \"status\": ");
                put(
                    out,
                    s.pick(&["200", "200", "200", "201", "204", "302", "404", "500"]),
                );
                put(out, ", \"duration_ms\": ");
                put_u64(out, s.log_uniform(1, 5000) as u64);
                put(out, ", \"request_id\": \"");
                put_hex(out, s.next_u64());
                put_hex(out, s.next_u64());
                // Only the uniform model updates events: a consumer acknowledges them.
                put(
                    out,
                    if row.night > 0 {
                        "\", \"acked\": true}"
                    } else {
                        "\"}"
                    },
                );
            }
            Kind::OrderItems => {
                put_u64(out, 1 + row.id / 3 + s.below(2));
                tab(out);
                put_u64(out, s.range(1, 20_000));
                tab(out);
                put_u64(out, m.log_uniform(1, 40) as u64);
                tab(out);
                put_money(out, s.log_uniform(99, 250_000) as u64);
                tab(out);
                put_money(
                    out,
                    if m.chance(0.8) {
                        0
                    } else {
                        m.range(1, 50) * 100
                    },
                );
            }
            Kind::Orders => {
                put_u64(out, s.range(1, 400_000));
                tab(out);
                put(
                    out,
                    if row.night == 0 {
                        m.pick(&[
                            "delivered",
                            "delivered",
                            "delivered",
                            "delivered",
                            "shipped",
                            "cancelled",
                            "refunded",
                        ])
                    } else {
                        m.pick(&["paid", "shipped", "delivered", "cancelled", "refunded"])
                    },
                );
                tab(out);
                put(out, s.pick(&["EUR", "EUR", "USD", "GBP", "CHF", "SEK"]));
                tab(out);
                put_money(out, s.log_uniform(500, 2_000_000) as u64);
                tab(out);
                put_ts(out, created, s.below(1_000_000));
                tab(out);
                put_ts(out, updated, m.below(1_000_000));
                tab(out);
                put_u64(out, s.range(1, 250));
                put(out, " ");
                put(out, s.pick(STREETS));
                put(out, ", ");
                put_pad(out, s.below(100_000), 5);
                put(out, " ");
                put(out, s.pick(CITIES));
                tab(out);
                if m.chance(0.75) {
                    null(out);
                } else {
                    put_words(out, &mut m, 2, 16);
                }
            }
            Kind::Products => {
                put(out, "SKU-");
                put_pad(out, row.id, 6);
                tab(out);
                let n = s.range(2, 4);
                for i in 0..n {
                    if i > 0 {
                        put(out, " ");
                    }
                    put_capitalized(out, s.pick(WORDS));
                }
                tab(out);
                put_words(out, &mut s, 10, 40);
                tab(out);
                put_money(out, m.log_uniform(99, 500_000) as u64);
                tab(out);
                put_u64(out, m.below(5000));
                tab(out);
                put_ts(out, updated, m.below(1_000_000));
            }
        }
        out.push(b'\n');
    }
}

/// A file in an application's upload vault.
#[derive(Debug, Clone)]
pub struct VaultFile {
    pub path: String,
    pub data: Vec<u8>,
}

/// The sizes of a vault's files, both kinds log-uniform (as many files of 1-10 KiB as of
/// 1-10 MiB): `encrypted` of the files (by count) incompressible, like client-side encrypted
/// uploads, images and archives; the rest compressible documents, CSV exports and JSON.
#[derive(Debug, Clone, Copy)]
pub struct VaultShape {
    pub encrypted: f64,
    pub encrypted_sizes: (usize, usize),
    pub document_sizes: (usize, usize),
}

impl VaultShape {
    /// Few, large files: uploads of 16 KiB - 32 MiB, documents of 1 KiB - 4 MiB (about 3 MB a
    /// file on average). [`vault_files`] uses it.
    pub const LARGE: Self = Self {
        encrypted: 0.66,
        encrypted_sizes: (16 << 10, 32 << 20),
        document_sizes: (1 << 10, 4 << 20),
    };
}

/// About `total` bytes of uploads shaped as [`VaultShape::LARGE`].
pub fn vault_files(total: usize, seed: u64) -> Vec<VaultFile> {
    Vault::new(total, seed, VaultShape::LARGE).collect()
}

/// A vault generated one file at a time, until `total` bytes (the last file is cut short).
/// Encrypted uploads are `uploads/<2 hex>/<16 hex>.enc`, documents `documents/<n>.<ext>`.
#[derive(Debug, Clone)]
pub struct Vault {
    rng: Rng,
    left: usize,
    i: u64,
    shape: VaultShape,
}

impl Vault {
    pub fn new(total: usize, seed: u64, shape: VaultShape) -> Self {
        Self {
            rng: Rng::new(seed),
            left: total,
            i: 0,
            shape,
        }
    }
}

impl Iterator for Vault {
    type Item = VaultFile;

    fn next(&mut self) -> Option<VaultFile> {
        if self.left == 0 {
            return None;
        }
        let rng = &mut self.rng;
        self.i += 1;
        let (path, mut data) = if rng.chance(self.shape.encrypted) {
            let (lo, hi) = self.shape.encrypted_sizes;
            let n = rng.log_uniform(lo, hi).min(self.left);
            let mut name = Vec::new();
            put_hex(&mut name, rng.next_u64());
            let name = String::from_utf8_lossy(&name).into_owned();
            let path = format!("uploads/{}/{name}.enc", &name[..2]);
            (path, random_bytes(n, rng.next_u64()))
        } else {
            let (lo, hi) = self.shape.document_sizes;
            let n = rng.log_uniform(lo, hi).min(self.left);
            let ext = rng.pick(&["txt", "csv", "json"]);
            let data = document(ext, n, rng);
            (format!("documents/{:06}.{ext}", self.i), data)
        };
        data.truncate(self.left);
        self.left -= data.len();
        Some(VaultFile { path, data })
    }
}

/// At least `n` bytes (whole lines) of a document: `csv` rows, `json` lines, or prose for any
/// other extension.
pub fn document(ext: &str, n: usize, rng: &mut Rng) -> Vec<u8> {
    let mut data = Vec::with_capacity(n + 256);
    while data.len() < n {
        match ext {
            "csv" => {
                put_u64(&mut data, rng.below(1_000_000));
                put(&mut data, ",");
                put(&mut data, rng.pick(LAST_NAMES));
                put(&mut data, ",");
                put_money(&mut data, rng.log_uniform(1, 1_000_000) as u64);
                put(&mut data, "\n");
            }
            "json" => {
                put(&mut data, "{\"id\": ");
                put_u64(&mut data, rng.below(1_000_000));
                put(&mut data, ", \"name\": \"");
                put(&mut data, rng.pick(FIRST_NAMES));
                put(&mut data, "\", \"tags\": [\"");
                put(&mut data, rng.pick(WORDS));
                put(&mut data, "\"], \"note\": \"");
                put_words(&mut data, rng, 4, 20);
                put(&mut data, "\"}\n");
            }
            _ => {
                put_words(&mut data, rng, 8, 30);
                put(&mut data, ".\n");
            }
        }
    }
    data
}

fn put(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

fn tab(out: &mut Vec<u8>) {
    out.push(b'\t');
}

fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\\N");
}

fn put_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// `n` zero-padded to `width` digits.
fn put_pad(out: &mut Vec<u8>, n: u64, width: usize) {
    let start = out.len();
    put_u64(out, n);
    let len = out.len() - start;
    if len < width {
        out.splice(start..start, std::iter::repeat_n(b'0', width - len));
    }
}

/// Cents as `numeric(12,2)`.
fn put_money(out: &mut Vec<u8>, cents: u64) {
    put_u64(out, cents / 100);
    out.push(b'.');
    put_pad(out, cents % 100, 2);
}

fn put_hex(out: &mut Vec<u8>, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..16).rev() {
        out.push(HEX[((n >> (i * 4)) & 15) as usize]);
    }
}

fn put_lower(out: &mut Vec<u8>, s: &str) {
    out.extend(s.bytes().map(|b| b.to_ascii_lowercase()));
}

fn put_capitalized(out: &mut Vec<u8>, s: &str) {
    let mut b = s.bytes();
    if let Some(first) = b.next() {
        out.push(first.to_ascii_uppercase());
        out.extend(b);
    }
}

/// `lo..=hi` words of prose; `pg_dump` escapes an embedded newline as `\n`.
fn put_words(out: &mut Vec<u8>, rng: &mut Rng, lo: u64, hi: u64) {
    let n = rng.range(lo, hi);
    for i in 0..n {
        if i > 0 {
            put(out, if rng.chance(0.02) { "\\n" } else { " " });
        }
        put(out, rng.pick(WORDS));
    }
}

/// `timestamp with time zone` as PostgreSQL prints it in UTC.
fn put_ts(out: &mut Vec<u8>, unix: u64, micros: u64) {
    let days = (unix / DAY) as i64;
    let secs = unix % DAY;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    put_u64(out, y as u64);
    out.push(b'-');
    put_pad(out, mo as u64, 2);
    out.push(b'-');
    put_pad(out, d as u64, 2);
    out.push(b' ');
    put_pad(out, secs / 3600, 2);
    out.push(b':');
    put_pad(out, secs / 60 % 60, 2);
    out.push(b':');
    put_pad(out, secs % 60, 2);
    out.push(b'.');
    put_pad(out, micros, 6);
    put(out, "+00");
}

const FIRST_NAMES: &[&str] = &[
    "Maria", "James", "Anna", "Lukas", "Sofia", "Noah", "Emma", "Liam", "Olivia", "Mateo", "Chloe",
    "Jan", "Elena", "Ahmed", "Yuki", "Priya", "Oliver", "Lea", "David", "Sara", "Mohammed",
    "Julia", "Pierre", "Ines", "Tomas", "Aiko", "Carlos", "Hannah", "Ivan", "Zoe", "Marco",
    "Fatima", "Erik", "Lucia", "Ben", "Nina", "Hugo", "Mila", "Felix", "Amara",
];

const LAST_NAMES: &[&str] = &[
    "Garcia",
    "Smith",
    "Muller",
    "Rossi",
    "Dubois",
    "Nowak",
    "Jensen",
    "Silva",
    "Kowalski",
    "Novak",
    "Tanaka",
    "Khan",
    "Brown",
    "Martin",
    "Schmidt",
    "Lopez",
    "Ivanov",
    "Nielsen",
    "Fischer",
    "Moreau",
    "Bianchi",
    "Wilson",
    "Costa",
    "Horvat",
    "Lindqvist",
    "Okafor",
    "Yilmaz",
    "Papadopoulos",
    "Hansen",
    "Weber",
    "Murphy",
    "Kim",
    "Nguyen",
    "Singh",
    "Johansson",
    "Fernandez",
    "Meyer",
    "Petrov",
    "Sato",
    "Dvorak",
];

const DOMAINS: &[&str] = &[
    "example.com",
    "mail.example.org",
    "inbox.example.net",
    "corp.example.com",
    "example.de",
    "post.example.fr",
    "example.co.uk",
    "mailbox.example.io",
];

const COUNTRIES: &[&str] = &[
    "DE", "FR", "ES", "IT", "NL", "BE", "AT", "CH", "PL", "SE", "DK", "NO", "FI", "PT", "IE", "GB",
    "US", "CA", "CZ", "GR",
];

const CITIES: &[&str] = &[
    "Berlin",
    "Paris",
    "Madrid",
    "Rome",
    "Amsterdam",
    "Brussels",
    "Vienna",
    "Zurich",
    "Warsaw",
    "Stockholm",
    "Copenhagen",
    "Oslo",
    "Helsinki",
    "Lisbon",
    "Dublin",
    "London",
    "Prague",
    "Athens",
    "Munich",
    "Lyon",
    "Barcelona",
    "Milan",
    "Rotterdam",
    "Krakow",
];

const STREETS: &[&str] = &[
    "Main Street",
    "High Street",
    "Station Road",
    "Church Lane",
    "Mill Road",
    "Park Avenue",
    "Hauptstrasse",
    "Bahnhofstrasse",
    "Rue de la Paix",
    "Calle Mayor",
    "Via Roma",
    "Kerkstraat",
    "Storgatan",
    "Ulica Dluga",
    "Rua Augusta",
    "Market Square",
];

const ACTIONS: &[&str] = &[
    "login",
    "logout",
    "view_order",
    "create_order",
    "update_profile",
    "password_reset",
    "add_to_cart",
    "remove_from_cart",
    "checkout",
    "download_invoice",
    "api_call",
    "search",
];

const RESOURCES: &[&str] = &[
    "orders",
    "customers",
    "products",
    "invoices",
    "carts",
    "search",
];

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "okhttp/4.12.0",
    "python-requests/2.31.0",
];

const WORDS: &[&str] = &[
    "the",
    "order",
    "customer",
    "delivery",
    "please",
    "call",
    "before",
    "arrival",
    "leave",
    "at",
    "door",
    "gift",
    "wrap",
    "invoice",
    "company",
    "address",
    "changed",
    "requested",
    "refund",
    "item",
    "damaged",
    "replacement",
    "sent",
    "priority",
    "shipping",
    "express",
    "standard",
    "return",
    "label",
    "printed",
    "warehouse",
    "north",
    "south",
    "backorder",
    "expected",
    "next",
    "week",
    "contact",
    "via",
    "email",
    "phone",
    "only",
    "weekdays",
    "morning",
    "afternoon",
    "discount",
    "applied",
    "coupon",
    "loyal",
    "member",
    "since",
    "account",
    "verified",
    "tax",
    "exempt",
    "number",
    "attached",
    "note",
    "from",
    "support",
    "ticket",
    "resolved",
    "pending",
    "review",
    "manager",
    "approved",
    "bulk",
    "pricing",
    "quote",
    "valid",
    "until",
    "end",
    "of",
    "month",
    "blue",
    "green",
    "large",
    "small",
    "cotton",
    "steel",
    "wooden",
    "premium",
    "basic",
    "set",
    "pack",
    "kit",
    "lamp",
    "chair",
    "table",
    "bottle",
    "cable",
    "adapter",
    "charger",
    "notebook",
    "pen",
    "bag",
    "shoe",
    "jacket",
    "and",
    "with",
    "for",
    "to",
    "in",
    "on",
    "is",
    "was",
    "not",
    "a",
    "an",
    "by",
];
