-- Version 4: what a HEAD reads, in one round trip, if no node holds the
-- upload's lock (`pg_locks`: session advisory locks on the same keys). A
-- function rather than one statement: a statement reads from the snapshot
-- it started with, so a writer that committed and let go between that
-- snapshot and the lock try would go unseen; in a VOLATILE function the
-- read after the try takes a snapshot of its own.
CREATE FUNCTION tusk_status_unless_locked(upload uuid, lock_key bigint, OUT quiet boolean, OUT record bytea)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- Shared and transaction-scoped: readers never refuse one another, any
    -- holder refuses them, and it ends with the statement.
    quiet := pg_try_advisory_xact_lock_shared(lock_key);
    IF quiet THEN
        SELECT u.record INTO record FROM uploads u WHERE u.id = upload;
    END IF;
END
$$;
