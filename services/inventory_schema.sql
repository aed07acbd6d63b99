-- Inventory schema, in parts: each `-- @kind name` line starts the part that creates that
-- object. At start the service reads the catalog and applies only the parts whose object
-- is missing (a function also when its text changed), under an advisory lock
-- (services/inventory_schema.py). Every part is idempotent.

-- @table coupons
CREATE TABLE IF NOT EXISTS coupons (
    name             text        PRIMARY KEY,
    amount           bigint      NOT NULL CHECK (amount >= 0),
    remaining_amount bigint      NOT NULL CHECK (remaining_amount >= 0 AND remaining_amount <= amount),
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- @table holds
-- One row per claim saga. No foreign key to coupons on purpose: its FOR KEY SHARE lock
-- on the hot coupon row would turn every reserve into a MultiXact on that row.
-- reserve_units() checks that the coupon exists; coupons are never deleted.
CREATE TABLE IF NOT EXISTS holds (
    saga_id     uuid        PRIMARY KEY,
    coupon_name text        NOT NULL,
    user_id     text        NOT NULL,
    status      text        NOT NULL CHECK (status IN ('held', 'confirmed', 'released')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- @index holds_one_live_per_user
-- The semantic lock: one live hold per user and coupon. A second attempt by the same user
-- is refused here, and takes nothing from the stock.
CREATE UNIQUE INDEX IF NOT EXISTS holds_one_live_per_user
    ON holds (coupon_name, user_id) WHERE status <> 'released';

-- @index holds_held_by_age
CREATE INDEX IF NOT EXISTS holds_held_by_age ON holds (updated_at) WHERE status = 'held';

-- @table inventory_lineage
-- Which PostgreSQL history the stock was last reconciled on: its system identifier and
-- timeline. A promoted standby starts a new timeline, and under asynchronous replication
-- it may lack the newest commits (holds, and the stock they took) while the claim
-- documents of those sagas stand in MongoDB. Until the service has restored them (and
-- written this row again), reserve_units refuses: a lost unit is never sold twice.
CREATE TABLE IF NOT EXISTS inventory_lineage (
    only_row          boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    system_identifier bigint      NOT NULL,
    timeline          integer     NOT NULL,
    reconciled_at     timestamptz NOT NULL DEFAULT now()
);

-- @function inventory_lineage_now
-- The server's history as it stands: its system identifier and the timeline it writes
-- on now (the WAL file name's first 8 hex digits; pg_control_checkpoint lags a
-- promotion until its first checkpoint). Both functions are granted to PUBLIC.
CREATE OR REPLACE FUNCTION inventory_lineage_now(OUT system_identifier bigint, OUT timeline integer)
LANGUAGE sql AS $$
    SELECT (SELECT s.system_identifier FROM pg_control_system() s),
           ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::integer
$$;

-- @function lineage_reconciled
-- Whether the stock was reconciled on the history this server writes. A session checks
-- once: its server cannot change history under it. (A standby has no history of its own
-- to check: a write there is refused anyway.)
CREATE OR REPLACE FUNCTION lineage_reconciled() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('coupon.lineage_checked', true) = 'yes' OR pg_is_in_recovery() THEN
        RETURN true;
    END IF;
    IF NOT EXISTS (SELECT FROM inventory_lineage l, inventory_lineage_now() n
                   WHERE l.system_identifier = n.system_identifier
                     AND l.timeline = n.timeline) THEN
        RETURN false;
    END IF;
    PERFORM set_config('coupon.lineage_checked', 'yes', false);
    RETURN true;
END;
$$;

-- @function confirm_units
-- Confirm each saga's hold: 'confirmed' (also when it was already), 'missing' (no live
-- hold: none, or released), or for every saga 'unreconciled' (lineage_reconciled: a
-- promoted standby may lack the hold, which the reconciliation gives back first). One
-- guarded UPDATE, so a confirm racing another of the same saga re-reads the newest row
-- version after the lock and still finds it confirmed.
CREATE OR REPLACE FUNCTION confirm_units(p_saga_ids uuid[]) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    v_confirmed uuid[];
BEGIN
    IF NOT lineage_reconciled() THEN
        RETURN array_fill('unreconciled'::text,
                          ARRAY[greatest(coalesce(cardinality(p_saga_ids), 0), 1)]);
    END IF;
    WITH confirmed AS (
        UPDATE holds
        SET status = 'confirmed',
            updated_at = CASE WHEN status = 'held' THEN now() ELSE updated_at END
        WHERE saga_id = ANY(p_saga_ids) AND status <> 'released'
        RETURNING saga_id
    )
    SELECT coalesce(array_agg(saga_id), '{}') INTO v_confirmed FROM confirmed;
    RETURN ARRAY(SELECT CASE WHEN id = ANY(v_confirmed) THEN 'confirmed' ELSE 'missing' END
                 FROM unnest(p_saga_ids) WITH ORDINALITY AS given(id, at) ORDER BY at);
END;
$$;

-- @function reserve_units
-- Reserve one unit for each saga given, in one round trip and one transaction. Each
-- saga's outcome, in the order given: 'reserved' (also on a replay of the same saga),
-- 'already_claimed' (the user's unit of the coupon is confirmed), 'in_flight:<saga id>'
-- (it is held by that saga, not confirmed yet), 'out_of_stock', 'coupon_not_found' or
-- 'released' (this saga was compensated already); or, for every saga, 'unreconciled':
-- this server's history is not the one the stock was last reconciled on (a promoted
-- standby: lineage_reconciled), and nothing is reserved until it is.
--
-- The lock order, the same in every function here that touches a coupon's stock: the
-- coupons' rows first (in name order, so two batches never wait for each other in a
-- cycle), then holds. Then each item inserts its hold (the partial unique index refuses
-- a duplicate, also one earlier in the same batch), takes a unit while the locked stock
-- lasts, or takes its hold back out; the stock row is written once per coupon at the
-- end. Nothing refused keeps a hold, and the whole batch commits or none of it.
CREATE OR REPLACE FUNCTION reserve_units(p_saga_ids uuid[], p_coupons text[], p_users text[])
RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    v_names text[];
    v_left bigint[];
    v_taken bigint[];
    v_outcomes text[] := '{}';
    v_at int;
    v_status text;
    v_holder uuid;
BEGIN
    IF NOT lineage_reconciled() THEN
        RETURN array_fill('unreconciled'::text,
                          ARRAY[greatest(coalesce(cardinality(p_saga_ids), 0), 1)]);
    END IF;
    SELECT coalesce(array_agg(name ORDER BY name), '{}'),
           coalesce(array_agg(remaining_amount ORDER BY name), '{}')
    INTO v_names, v_left
    FROM (SELECT name, remaining_amount FROM coupons
          WHERE name = ANY(p_coupons) ORDER BY name FOR UPDATE) AS locked;
    v_taken := array_fill(0::bigint, ARRAY[greatest(cardinality(v_names), 1)]);

    FOR i IN 1 .. coalesce(cardinality(p_saga_ids), 0) LOOP
        v_at := array_position(v_names, p_coupons[i]);
        IF v_at IS NULL THEN
            v_outcomes := v_outcomes || 'coupon_not_found'::text;
            CONTINUE;
        END IF;

        INSERT INTO holds (saga_id, coupon_name, user_id, status)
        VALUES (p_saga_ids[i], p_coupons[i], p_users[i], 'held')
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            SELECT status INTO v_status FROM holds WHERE saga_id = p_saga_ids[i];
            IF NOT FOUND THEN
                SELECT saga_id, status INTO v_holder, v_status FROM holds
                WHERE coupon_name = p_coupons[i] AND user_id = p_users[i]
                  AND status <> 'released';
                v_outcomes := v_outcomes || CASE v_status
                    WHEN 'held' THEN 'in_flight:' || v_holder::text
                    ELSE 'already_claimed' END;
            ELSE
                v_outcomes := v_outcomes
                    || CASE v_status WHEN 'released' THEN 'released' ELSE 'reserved' END;
            END IF;
        ELSIF v_taken[v_at] < v_left[v_at] THEN
            v_taken[v_at] := v_taken[v_at] + 1;
            v_outcomes := v_outcomes || 'reserved'::text;
        ELSE
            DELETE FROM holds WHERE saga_id = p_saga_ids[i];
            v_outcomes := v_outcomes || 'out_of_stock'::text;
        END IF;
    END LOOP;

    UPDATE coupons SET remaining_amount = remaining_amount - taken.units
    FROM unnest(v_names, v_taken[1:cardinality(v_names)]) AS taken(name, units)
    WHERE coupons.name = taken.name AND taken.units > 0;
    RETURN v_outcomes;
END;
$$;

-- @function reserve_unit
-- reserve_units for one saga: a gateway without batching (STORE_BATCHING=false), and the
-- pool's warm-up. The same rules and lock order, so it never deadlocks with a batch.
CREATE OR REPLACE FUNCTION reserve_unit(p_saga_id uuid, p_coupon text, p_user text)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    RETURN (reserve_units(ARRAY[p_saga_id], ARRAY[p_coupon], ARRAY[p_user]))[1];
END;
$$;

-- @function release_unit
-- Release a saga's hold and give its unit back, only if it is still held. If the saga
-- never reserved, a 'released' tombstone is written, so a late reserve of the same saga
-- (a worker paused past its lease) finds it and takes nothing. Returns true if a unit
-- went back. A concurrent reserve of the same saga is waited for by ON CONFLICT.
-- The coupon's row is taken first (reserve_units' lock order): a release that held the
-- user's hold while it waited for the row would deadlock with a batch that holds the row
-- and inserts the same user's next hold.
CREATE OR REPLACE FUNCTION release_unit(p_saga_id uuid, p_coupon text, p_user text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_coupon text;
BEGIN
    PERFORM FROM coupons WHERE name = p_coupon FOR UPDATE;
    INSERT INTO holds (saga_id, coupon_name, user_id, status)
    VALUES (p_saga_id, p_coupon, p_user, 'released')
    ON CONFLICT (saga_id) DO UPDATE SET status = 'released', updated_at = now()
        WHERE holds.status = 'held'
    RETURNING CASE WHEN xmax = 0 THEN NULL ELSE holds.coupon_name END INTO v_coupon;
    -- xmax = 0: the tombstone was inserted, nothing was held.
    IF v_coupon IS NULL THEN
        RETURN false;
    END IF;
    UPDATE coupons SET remaining_amount = remaining_amount + 1 WHERE name = v_coupon;
    RETURN true;
END;
$$;

-- @function restore_holds
-- Restore holds a failover lost: for each saga, its hold with `p_status` ('confirmed':
-- its claim document stands; 'held': it is in flight, its reserve acknowledged), taking
-- its unit again. Each saga's outcome: 'restored'; 'confirmed' (its hold was held, and
-- is confirmed now, as `p_status` asks); 'present' (it has a hold already, otherwise:
-- a released one is the audit's to judge);
-- 'conflict' (the user holds another live unit of the coupon); 'no_stock' (no unit left
-- to take back: sold twice already); 'coupon_not_found'. The lock order of reserve_units.
CREATE OR REPLACE FUNCTION restore_holds(p_saga_ids uuid[], p_coupons text[], p_users text[], p_status text)
RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    v_names text[];
    v_left bigint[];
    v_taken bigint[];
    v_outcomes text[] := '{}';
    v_at int;
BEGIN
    SELECT coalesce(array_agg(name ORDER BY name), '{}'),
           coalesce(array_agg(remaining_amount ORDER BY name), '{}')
    INTO v_names, v_left
    FROM (SELECT name, remaining_amount FROM coupons
          WHERE name = ANY(p_coupons) ORDER BY name FOR UPDATE) AS locked;
    v_taken := array_fill(0::bigint, ARRAY[greatest(cardinality(v_names), 1)]);

    FOR i IN 1 .. coalesce(cardinality(p_saga_ids), 0) LOOP
        v_at := array_position(v_names, p_coupons[i]);
        IF v_at IS NULL THEN
            v_outcomes := v_outcomes || 'coupon_not_found'::text;
        ELSIF p_status = 'confirmed' AND EXISTS (
                SELECT FROM holds WHERE saga_id = p_saga_ids[i] AND status = 'held') THEN
            UPDATE holds SET status = 'confirmed', updated_at = now()
            WHERE saga_id = p_saga_ids[i];
            v_outcomes := v_outcomes || 'confirmed'::text;
        ELSIF EXISTS (SELECT FROM holds WHERE saga_id = p_saga_ids[i]) THEN
            v_outcomes := v_outcomes || 'present'::text;
        ELSIF EXISTS (SELECT FROM holds WHERE coupon_name = p_coupons[i]
                      AND user_id = p_users[i] AND status <> 'released') THEN
            v_outcomes := v_outcomes || 'conflict'::text;
        ELSIF v_taken[v_at] >= v_left[v_at] THEN
            v_outcomes := v_outcomes || 'no_stock'::text;
        ELSE
            INSERT INTO holds (saga_id, coupon_name, user_id, status)
            VALUES (p_saga_ids[i], p_coupons[i], p_users[i], p_status);
            v_taken[v_at] := v_taken[v_at] + 1;
            v_outcomes := v_outcomes || 'restored'::text;
        END IF;
    END LOOP;

    UPDATE coupons SET remaining_amount = remaining_amount - taken.units
    FROM unnest(v_names, v_taken[1:cardinality(v_names)]) AS taken(name, units)
    WHERE coupons.name = taken.name AND taken.units > 0;
    RETURN v_outcomes;
END;
$$;
