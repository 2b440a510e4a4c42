-- tusk's metadata in PostgreSQL, version 1: what the sled backend keeps in
-- its trees. A record is the same MessagePack the sled backend stores;
-- the columns beside it are what lists, start-up and expiry select on
-- (computed from the record by the backend, in the same statement).
CREATE TABLE uploads (
    id uuid PRIMARY KEY,
    project_id uuid NOT NULL,
    record bytea NOT NULL,
    -- Where the record is listed: in flight (0), processing, ready, failed,
    -- not listed (255); its sniffed type's code (240 unknown, 254 partial).
    grp smallint NOT NULL,
    kind smallint NOT NULL,
    is_asset boolean NOT NULL,
    offset_bytes bigint NOT NULL,
    -- Unfinished (not complete, not refused): counted as in flight.
    in_flight boolean NOT NULL,
    -- Listed in flight with every byte in: its processing must start.
    not_started boolean NOT NULL,
    -- What the record counts in its project's usage once it is settled.
    settled_bytes bigint NOT NULL,
    settled_asset boolean NOT NULL,
    updated_at bigint NOT NULL
);
CREATE INDEX uploads_listed ON uploads (project_id, id DESC) WHERE grp <> 255 AND kind <> 254;
-- Lists filtered by state and type read only what they return.
CREATE INDEX uploads_listed_by ON uploads (project_id, grp, kind, id DESC) WHERE grp <> 255 AND kind <> 254;
CREATE INDEX uploads_by_group ON uploads (grp) WHERE grp IN (0, 1);

CREATE TABLE tombstones (
    id uuid PRIMARY KEY,
    at bigint NOT NULL,
    stone bytea NOT NULL
);
CREATE INDEX tombstones_at ON tombstones (at);

CREATE TABLE token_uses (
    token_id text PRIMARY KEY,
    uses bigint NOT NULL
);

-- Unfinished uploads by their last change: the expiry sweeper takes those due.
CREATE TABLE expiry (
    id uuid PRIMARY KEY,
    at bigint NOT NULL
);
CREATE INDEX expiry_at ON expiry (at);

CREATE TABLE waiting_finals (
    final_id uuid PRIMARY KEY,
    parts uuid[] NOT NULL
);
CREATE INDEX waiting_finals_parts ON waiting_finals USING gin (parts);
