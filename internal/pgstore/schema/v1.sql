-- otpgate PostgreSQL schema, version 1 (docs/postgres.md).
--
-- pgstore.Init runs this file as the role otpgate_owner, inside one
-- transaction, after creating the schema otpgate and pgcrypto in it.
-- Every statement is idempotent: Init may run it again on a database that
-- has it. Every object is named with its schema, and every function that
-- runs as its owner (SECURITY DEFINER) pins search_path, so that nothing a
-- caller puts in its own search_path changes what is called.

CREATE TABLE IF NOT EXISTS otpgate.schema_version (
    version integer PRIMARY KEY,
    applied timestamptz NOT NULL DEFAULT now()
);

-- One policy for the fleet: the lockout is counted in one place, so it is
-- decided in one place.
CREATE TABLE IF NOT EXISTS otpgate.policy (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    time_window integer NOT NULL CHECK (time_window BETWEEN 0 AND 10),
    max_failures integer NOT NULL CHECK (max_failures BETWEEN 1 AND 100),
    lock_duration interval NOT NULL CHECK (lock_duration BETWEEN interval '1 second' AND interval '168 hours')
);

CREATE TABLE IF NOT EXISTS otpgate.users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (octet_length(name) BETWEEN 1 AND 64),
    created timestamptz NOT NULL DEFAULT now()
);

-- A user may have several authenticators; each has its own last step.
CREATE TABLE IF NOT EXISTS otpgate.authenticators (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES otpgate.users (id) ON DELETE CASCADE,
    label text NOT NULL CHECK (octet_length(label) BETWEEN 1 AND 64),
    secret bytea NOT NULL CHECK (octet_length(secret) BETWEEN 16 AND 128),
    algorithm text NOT NULL CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
    digits integer NOT NULL CHECK (digits IN (6, 8)),
    period integer NOT NULL CHECK (period BETWEEN 10 AND 300),
    created timestamptz NOT NULL DEFAULT now(),
    last_step bigint NOT NULL DEFAULT 0 CHECK (last_step >= 0),
    UNIQUE (user_id, label)
);

-- Backup codes: the argon2id key of each unused code and its salt (the
-- parts of backupcode's PHC string). The host hashes a typed code under
-- the salts (otpgate.backup_salts); the keys never leave the database.
CREATE TABLE IF NOT EXISTS otpgate.backup_codes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES otpgate.users (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('code', 'scratch')),
    params text NOT NULL,
    salt bytea NOT NULL,
    key bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS backup_codes_user ON otpgate.backup_codes (user_id);

CREATE TABLE IF NOT EXISTS otpgate.user_state (
    user_id bigint PRIMARY KEY REFERENCES otpgate.users (id) ON DELETE CASCADE,
    failures integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    locked_until timestamptz,
    last_success timestamptz,
    last_failure timestamptz,
    last_service text,
    last_rhost text
);

-- An attempt between its two transactions: charged as a failure and its
-- input fixed (committed), not yet checked. See otpgate.begin_attempt_at.
CREATE TABLE IF NOT EXISTS otpgate.pending_attempts (
    token bytea PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES otpgate.users (id) ON DELETE CASCADE,
    code text NOT NULL,
    backup_keys bytea[] NOT NULL,
    service text NOT NULL,
    rhost text NOT NULL,
    at timestamptz NOT NULL,      -- the time the code is checked against
    charged timestamptz NOT NULL, -- the clock when it was charged
    xact xid8 NOT NULL,           -- the transaction that charged it
    set_lock boolean NOT NULL     -- its charge reached max_failures
);

-- The HOTP value (RFC 4226) of secret at counter: HMAC of the 8-byte
-- big-endian counter, dynamic truncation, the low digits.
CREATE OR REPLACE FUNCTION otpgate.hotp(secret bytea, counter bigint, algorithm text, digits integer)
RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT
SET search_path = pg_catalog, otpgate, pg_temp
AS $$
DECLARE
    mac bytea;
    off integer;
    bin bigint;
BEGIN
    IF algorithm NOT IN ('SHA1', 'SHA256', 'SHA512') OR digits NOT IN (6, 8) OR counter < 0 THEN
        RAISE EXCEPTION 'otpgate.hotp: unsupported parameters';
    END IF;
    mac := otpgate.hmac(pg_catalog.int8send(counter), secret, pg_catalog.lower(algorithm));
    off := pg_catalog.get_byte(mac, pg_catalog.length(mac) - 1) & 15;
    bin := ((pg_catalog.get_byte(mac, off) & 127)::bigint << 24)
         | (pg_catalog.get_byte(mac, off + 1)::bigint << 16)
         | (pg_catalog.get_byte(mac, off + 2)::bigint << 8)
         | pg_catalog.get_byte(mac, off + 3)::bigint;
    RETURN pg_catalog.lpad((bin % (CASE digits WHEN 6 THEN 1000000 ELSE 100000000 END))::text, digits, '0');
END
$$;

-- What an input is, as verify.Classify decides it: a TOTP code when it is
-- as many decimal digits as one of the user's authenticators has (after
-- trimming white space), else a backup code (backupcode.Normalize), else a
-- google-authenticator scratch code (backupcode.NormalizeScratch) when no
-- authenticator has 8 digits, else malformed. norm is the form compared.
CREATE OR REPLACE FUNCTION otpgate.classify(input text, digit_set integer[], OUT kind text, OUT norm text)
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, otpgate, pg_temp
AS $$
DECLARE
    -- Go's unicode.IsSpace, which strings.TrimSpace trims.
    ws constant text := E'\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000';
    s text;
    b text;
BEGIN
    kind := 'malformed';
    norm := NULL;
    s := pg_catalog.regexp_replace(coalesce(input, ''), '^[' || ws || ']+|[' || ws || ']+$', '', 'g');
    IF s ~ '^[0-9]+$' AND pg_catalog.length(s) = ANY (digit_set) THEN
        kind := 'totp';
        norm := s;
        RETURN;
    END IF;
    IF pg_catalog.octet_length(s) <= 40 THEN
        b := pg_catalog.translate(s, E' -\t', '');
        b := pg_catalog.translate(b, 'abcdefghijklmnopqrstuvwxyz', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ');
        b := pg_catalog.translate(b, 'OIL', '011');
        IF b ~ '^[0-9A-HJKMNP-TV-Z]{10}$' THEN
            kind := 'code';
            norm := b;
            RETURN;
        END IF;
    END IF;
    IF pg_catalog.octet_length(s) <= 32 THEN
        b := pg_catalog.translate(s, E' -\t', '');
        IF b ~ '^[0-9]{8}$' AND NOT (8 = ANY (digit_set)) THEN
            kind := 'scratch';
            norm := b;
            RETURN;
        END IF;
    END IF;
END
$$;

-- The first half of an attempt, in its own transaction: lock the user's
-- row, refuse while locked (nothing counted), otherwise count the attempt
-- as a failure (and lock at max_failures) and keep its input. Nothing
-- about the code is looked at here: once this commits, a host that throws
-- the second half away has spent a guess all the same. o_token names the
-- pending attempt; it is NULL when the verdict is already final
-- (not-enrolled, locked).
CREATE OR REPLACE FUNCTION otpgate.begin_attempt_at(p_user text, p_code text, p_keys bytea[], p_service text, p_rhost text, p_at timestamptz,
    OUT o_token bytea, OUT o_outcome text, OUT o_reason text, OUT o_failures integer, OUT o_locked_until timestamptz, OUT o_backup_left integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, otpgate, pg_temp
AS $$
DECLARE
    uid bigint;
    st otpgate.user_state%ROWTYPE;
    pol otpgate.policy%ROWTYPE;
    lock_now boolean := false;
    nsalts integer;
BEGIN
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'otpgate: an attempt runs at READ COMMITTED only';
    END IF;
    SELECT u.id INTO uid FROM otpgate.users u WHERE u.name = p_user FOR UPDATE;
    IF uid IS NULL OR NOT EXISTS (SELECT 1 FROM otpgate.authenticators a WHERE a.user_id = uid) THEN
        o_outcome := 'not-enrolled';
        o_reason := 'not-enrolled';
        RETURN;
    END IF;
    SELECT * INTO STRICT pol FROM otpgate.policy;
    SELECT * INTO STRICT st FROM otpgate.user_state s WHERE s.user_id = uid;
    o_backup_left := (SELECT pg_catalog.count(*) FROM otpgate.backup_codes b WHERE b.user_id = uid);
    IF st.locked_until IS NOT NULL AND p_at < st.locked_until THEN
        o_outcome := 'locked';
        o_reason := 'locked';
        o_failures := st.failures;
        o_locked_until := st.locked_until;
        RETURN;
    END IF;
    IF st.locked_until IS NOT NULL THEN
        -- The lock ran out: a fresh run of max_failures attempts.
        st.failures := 0;
        st.locked_until := NULL;
    END IF;
    st.failures := st.failures + 1;
    IF st.failures >= pol.max_failures THEN
        st.locked_until := p_at + pol.lock_duration;
        lock_now := true;
    END IF;
    UPDATE otpgate.user_state s
       SET failures = st.failures, locked_until = st.locked_until, last_failure = p_at,
           last_service = pg_catalog.left(p_service, 128), last_rhost = pg_catalog.left(p_rhost, 128)
     WHERE s.user_id = uid;
    -- Attempts whose second half never came (a host that died) keep their
    -- charge; their input goes.
    DELETE FROM otpgate.pending_attempts p WHERE p.charged < pg_catalog.clock_timestamp() - interval '5 minutes';
    -- One key per salt an honest host was given (otpgate.backup_salts),
    -- in its order; finish_attempt compares key i with the codes under
    -- salt i only, so a host gets one guess per salt for one charge.
    nsalts := (SELECT pg_catalog.count(*) FROM (SELECT DISTINCT b.kind, b.params, b.salt
                 FROM otpgate.backup_codes b WHERE b.user_id = uid) x);
    o_token := otpgate.gen_random_bytes(16);
    INSERT INTO otpgate.pending_attempts (token, user_id, code, backup_keys, service, rhost, at, charged, xact, set_lock)
    VALUES (o_token, uid, pg_catalog.left(coalesce(p_code, ''), 256), coalesce(p_keys[1:LEAST(50, nsalts)], '{}'),
            pg_catalog.left(coalesce(p_service, ''), 128), pg_catalog.left(coalesce(p_rhost, ''), 128),
            p_at, pg_catalog.clock_timestamp(), pg_catalog.pg_current_xact_id(), lock_now);
    o_outcome := 'pending';
    o_failures := st.failures;
    o_locked_until := st.locked_until;
END
$$;

CREATE OR REPLACE FUNCTION otpgate.begin_attempt(p_user text, p_code text, p_keys bytea[], p_service text, p_rhost text,
    OUT o_token bytea, OUT o_outcome text, OUT o_reason text, OUT o_failures integer, OUT o_locked_until timestamptz, OUT o_backup_left integer)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, otpgate, pg_temp
AS $$
    SELECT * FROM otpgate.begin_attempt_at(p_user, p_code, p_keys, p_service, p_rhost, pg_catalog.clock_timestamp())
$$;

-- The second half, in a later transaction: check the input kept by
-- begin_attempt_at at its time, against every authenticator of the user
-- and the backup codes, under the same rules as internal/verify. A
-- success undoes the charge (failures 0, no lock), records the step or
-- spends the backup code; a failure stays counted.
CREATE OR REPLACE FUNCTION otpgate.finish_attempt(p_token bytea,
    OUT o_outcome text, OUT o_reason text, OUT o_method text, OUT o_label text, OUT o_failures integer, OUT o_locked_until timestamptz, OUT o_backup_left integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, otpgate, pg_temp
AS $$
DECLARE
    pa otpgate.pending_attempts%ROWTYPE;
    uid bigint;
    pol otpgate.policy%ROWTYPE;
    st otpgate.user_state%ROWTYPE;
    dset integer[];
    c record;
    a record;
    center bigint;
    stp bigint;
    found_step bigint;
    match_id bigint;
    match_step bigint;
    replayed boolean := false;
    spend bigint;
BEGIN
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'otpgate: an attempt runs at READ COMMITTED only';
    END IF;
    SELECT p.user_id INTO uid FROM otpgate.pending_attempts p WHERE p.token = p_token;
    IF uid IS NULL THEN
        RAISE EXCEPTION 'otpgate: no such pending attempt';
    END IF;
    PERFORM 1 FROM otpgate.users u WHERE u.id = uid FOR UPDATE;
    DELETE FROM otpgate.pending_attempts p WHERE p.token = p_token RETURNING * INTO pa;
    IF pa.token IS NULL THEN
        RAISE EXCEPTION 'otpgate: no such pending attempt';
    END IF;
    IF pa.xact = pg_catalog.pg_current_xact_id_if_assigned() THEN
        -- Its charge would be undone with this transaction.
        RAISE EXCEPTION 'otpgate: an attempt is checked only after its first half has committed';
    END IF;
    SELECT * INTO STRICT pol FROM otpgate.policy;
    SELECT * INTO STRICT st FROM otpgate.user_state s WHERE s.user_id = uid;
    o_outcome := 'denied';
    o_reason := 'wrong-code';
    IF pg_catalog.clock_timestamp() - pa.charged > interval '30 seconds' THEN
        o_reason := 'stale-attempt';
    ELSE
        SELECT pg_catalog.array_agg(DISTINCT x.digits) INTO dset FROM otpgate.authenticators x WHERE x.user_id = uid;
        SELECT * INTO c FROM otpgate.classify(pa.code, dset);
        IF c.kind = 'totp' THEN
            -- Every step of the window of every authenticator of this
            -- length is computed and compared: the work does not depend
            -- on the outcome.
            FOR a IN SELECT x.id, x.label, x.secret, x.algorithm, x.digits, x.period, x.last_step
                       FROM otpgate.authenticators x
                      WHERE x.user_id = uid AND x.digits = pg_catalog.length(c.norm)
                      ORDER BY x.id LOOP
                center := GREATEST(pg_catalog.floor(EXTRACT(EPOCH FROM pa.at))::bigint, 0) / a.period;
                found_step := -1;
                stp := center - pol.time_window;
                WHILE stp <= center + pol.time_window LOOP
                    IF stp >= 0 THEN
                        IF otpgate.hotp(a.secret, stp, a.algorithm, a.digits) = c.norm THEN
                            IF stp > a.last_step THEN
                                IF found_step < 0 THEN
                                    found_step := stp;
                                END IF;
                            ELSE
                                replayed := true;
                            END IF;
                        END IF;
                    END IF;
                    stp := stp + 1;
                END LOOP;
                IF found_step >= 0 AND match_id IS NULL THEN
                    match_id := a.id;
                    match_step := found_step;
                    o_label := a.label;
                END IF;
            END LOOP;
            IF match_id IS NOT NULL THEN
                o_outcome := 'accepted';
                o_method := 'totp';
                o_reason := NULL;
            ELSIF replayed THEN
                o_reason := 'replayed';
            END IF;
        ELSIF c.kind IN ('code', 'scratch') THEN
            -- Key i against the codes under salt i (backup_salts'
            -- order) only.
            SELECT b.id INTO spend
              FROM otpgate.backup_codes b
              JOIN (SELECT x.kind, x.params, x.salt,
                           pg_catalog.row_number() OVER (ORDER BY x.kind, x.params, x.salt) AS i
                      FROM (SELECT DISTINCT y.kind, y.params, y.salt
                              FROM otpgate.backup_codes y WHERE y.user_id = uid) x) s
                ON s.kind = b.kind AND s.params = b.params AND s.salt = b.salt
             WHERE b.user_id = uid AND b.kind = c.kind AND b.key = pa.backup_keys[s.i]
             ORDER BY b.id LIMIT 1;
            IF spend IS NOT NULL THEN
                DELETE FROM otpgate.backup_codes b WHERE b.id = spend;
                o_outcome := 'accepted';
                o_method := 'backup';
                o_reason := NULL;
            END IF;
        ELSE
            o_reason := 'malformed-code';
        END IF;
    END IF;
    IF o_outcome = 'accepted' THEN
        UPDATE otpgate.user_state s
           SET failures = 0, locked_until = NULL, last_failure = NULL, last_success = pa.at,
               last_service = pa.service, last_rhost = pa.rhost
         WHERE s.user_id = uid;
        IF match_id IS NOT NULL THEN
            UPDATE otpgate.authenticators x SET last_step = match_step WHERE x.id = match_id;
        END IF;
        o_failures := 0;
    ELSE
        o_failures := st.failures;
        IF pa.set_lock THEN
            o_locked_until := st.locked_until;
        END IF;
    END IF;
    o_backup_left := (SELECT pg_catalog.count(*) FROM otpgate.backup_codes b WHERE b.user_id = uid);
END
$$;

-- One attempt, what a host calls: CALL otpgate.verify(user, code, keys,
-- service, rhost, NULL, ...). It runs as the caller and commits between
-- and after the two halves, so it works only outside a transaction block
-- (in one, COMMIT fails and nothing is answered); the verdict it returns
-- is durable.
CREATE OR REPLACE PROCEDURE otpgate.verify(p_user text, p_code text, p_keys bytea[], p_service text, p_rhost text,
    INOUT o_outcome text, INOUT o_reason text, INOUT o_method text, INOUT o_label text,
    INOUT o_failures integer, INOUT o_locked_until timestamptz, INOUT o_backup_left integer)
LANGUAGE plpgsql
AS $$
DECLARE
    t bytea;
    was_async constant boolean := pg_catalog.current_setting('synchronous_commit') = 'off';
BEGIN
    -- Each verdict is answered only once its commit is on disk, even where
    -- the server or the role turned synchronous_commit off.
    IF was_async THEN
        PERFORM pg_catalog.set_config('synchronous_commit', 'on', true);
    END IF;
    SELECT b.o_token, b.o_outcome, b.o_reason, b.o_failures, b.o_locked_until, b.o_backup_left
      INTO t, o_outcome, o_reason, o_failures, o_locked_until, o_backup_left
      FROM otpgate.begin_attempt(p_user, p_code, p_keys, p_service, p_rhost) b;
    COMMIT;
    IF t IS NOT NULL THEN
        IF was_async THEN
            PERFORM pg_catalog.set_config('synchronous_commit', 'on', true);
        END IF;
        SELECT f.o_outcome, f.o_reason, f.o_method, f.o_label, f.o_failures, f.o_locked_until, f.o_backup_left
          INTO o_outcome, o_reason, o_method, o_label, o_failures, o_locked_until, o_backup_left
          FROM otpgate.finish_attempt(t) f;
        COMMIT;
    END IF;
END
$$;

-- What a host may know about a user: no secret, no hash, no salt.
CREATE OR REPLACE FUNCTION otpgate.status(p_user text,
    OUT o_enrolled boolean, OUT o_authenticators text[], OUT o_failures integer, OUT o_locked_until timestamptz,
    OUT o_last_success timestamptz, OUT o_last_failure timestamptz, OUT o_backup_left integer)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, otpgate, pg_temp
AS $$
DECLARE
    uid bigint;
BEGIN
    SELECT u.id INTO uid FROM otpgate.users u WHERE u.name = p_user;
    SELECT pg_catalog.array_agg(x.label ORDER BY x.id) INTO o_authenticators FROM otpgate.authenticators x WHERE x.user_id = uid;
    o_enrolled := o_authenticators IS NOT NULL;
    IF NOT o_enrolled THEN
        o_authenticators := '{}';
        RETURN;
    END IF;
    SELECT s.failures, s.locked_until, s.last_success, s.last_failure
      INTO o_failures, o_locked_until, o_last_success, o_last_failure
      FROM otpgate.user_state s WHERE s.user_id = uid;
    o_backup_left := (SELECT pg_catalog.count(*) FROM otpgate.backup_codes b WHERE b.user_id = uid);
END
$$;

-- The salts (not the keys) of a user's unused backup codes, for the host
-- to hash a typed code under: argon2id does not exist in the database.
CREATE OR REPLACE FUNCTION otpgate.backup_salts(p_user text)
RETURNS TABLE (o_kind text, o_params text, o_salt bytea)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, otpgate, pg_temp
AS $$
    SELECT DISTINCT b.kind, b.params, b.salt
      FROM otpgate.backup_codes b JOIN otpgate.users u ON u.id = b.user_id
     WHERE u.name = p_user
     ORDER BY 1, 2, 3
$$;

INSERT INTO otpgate.policy (id, time_window, max_failures, lock_duration)
VALUES (true, 1, 5, interval '15 minutes')
ON CONFLICT (id) DO NOTHING;

INSERT INTO otpgate.schema_version (version) VALUES (1) ON CONFLICT (version) DO NOTHING;
