-- Version 3: each project's usage, kept by the database itself as records
-- change (a trigger, in the same transaction as the change), so that every
-- node reads the cluster's figures in one small query instead of summing
-- every record. What a record counts is what start-up used to sum:
-- its settled bytes and asset, and while unfinished its offset and itself.
-- Each project's figures are spread over 16 rows (by a byte of the upload
-- id) and summed when read: one row per project was a lock every creation
-- and commit of the project waited for, in turn.
CREATE TABLE project_usage (
    project_id uuid NOT NULL,
    shard smallint NOT NULL,
    bytes bigint NOT NULL DEFAULT 0,
    assets bigint NOT NULL DEFAULT 0,
    in_flight bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, shard)
);

CREATE FUNCTION tusk_usage_moved() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d_bytes bigint := 0;
    d_assets bigint := 0;
    d_in_flight bigint := 0;
    project uuid;
    part smallint;
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        project := NEW.project_id;
        part := get_byte(uuid_send(NEW.id), 15) % 16;
        d_bytes := NEW.settled_bytes + CASE WHEN NEW.in_flight THEN NEW.offset_bytes ELSE 0 END;
        d_assets := (NEW.settled_asset OR (NEW.in_flight AND NEW.is_asset))::int;
        d_in_flight := NEW.in_flight::int;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF TG_OP = 'UPDATE' AND OLD.project_id <> NEW.project_id THEN
            RAISE EXCEPTION 'an upload does not move between projects';
        END IF;
        project := OLD.project_id;
        part := get_byte(uuid_send(OLD.id), 15) % 16;
        d_bytes := d_bytes - (OLD.settled_bytes + CASE WHEN OLD.in_flight THEN OLD.offset_bytes ELSE 0 END);
        d_assets := d_assets - (OLD.settled_asset OR (OLD.in_flight AND OLD.is_asset))::int;
        d_in_flight := d_in_flight - OLD.in_flight::int;
    END IF;
    IF d_bytes <> 0 OR d_assets <> 0 OR d_in_flight <> 0 THEN
        INSERT INTO project_usage AS u (project_id, shard, bytes, assets, in_flight)
        VALUES (project, part, d_bytes, d_assets, d_in_flight)
        ON CONFLICT (project_id, shard) DO UPDATE SET
            bytes = u.bytes + EXCLUDED.bytes,
            assets = u.assets + EXCLUDED.assets,
            in_flight = u.in_flight + EXCLUDED.in_flight;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER uploads_usage AFTER INSERT OR UPDATE OR DELETE ON uploads
    FOR EACH ROW EXECUTE FUNCTION tusk_usage_moved();

-- What a database migrated from version 2 already holds.
INSERT INTO project_usage (project_id, shard, bytes, assets, in_flight)
SELECT project_id, 0,
       COALESCE(SUM(settled_bytes + CASE WHEN in_flight THEN offset_bytes ELSE 0 END), 0),
       COUNT(*) FILTER (WHERE settled_asset OR (in_flight AND is_asset)),
       COUNT(*) FILTER (WHERE in_flight)
FROM uploads GROUP BY project_id;
