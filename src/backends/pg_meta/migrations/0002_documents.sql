-- Version 2: what an operator manages beside the uploads (API keys, upload
-- tokens, project policies: one JSON document each), shared by every node.
-- A write takes a new revision, so a node polling the sum of a collection's
-- revisions and its size learns of a change without reading the documents.
CREATE SEQUENCE documents_revision;
CREATE TABLE documents (
    collection text NOT NULL,
    name text NOT NULL,
    body text NOT NULL,
    revision bigint NOT NULL DEFAULT nextval('documents_revision'),
    PRIMARY KEY (collection, name)
);

-- Secrets every node must agree on (the key that signs upload and
-- download URLs), made once by whichever node starts first.
CREATE TABLE secrets (
    name text PRIMARY KEY,
    value bytea NOT NULL
);
