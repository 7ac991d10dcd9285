-- Identity and access control: roles (data, not code), users, second
-- factors, sessions, API tokens, grants (explicit and break-glass), and the
-- site each study belongs to. Secrets are stored only as hashes (passwords:
-- Argon2id strings; tokens and recovery codes: SHA-256 of >= 128-bit random
-- values) or sealed with a keyring key (TOTP secrets).
CREATE TABLE role (
  name TEXT PRIMARY KEY,
  permissions TEXT NOT NULL,          -- see include/bastion/auth/permissions.h
  scope TEXT NOT NULL,                -- "all", "site", "referring", comma-separated; "" = grants only
  description TEXT NOT NULL
);
INSERT INTO role VALUES
  ('admin', 'echo,manage_users,manage_nodes,manage_config', '', 'manages users, nodes and configuration; no image access'),
  ('radiologist', 'echo,find,get,move', 'site', 'reads the studies of their site'),
  ('physician', 'echo,find,get', 'referring', 'sees studies where they are the referring or requesting physician'),
  ('technologist', 'echo,store,find,get', 'site', 'acquires and checks the studies of their site'),
  ('auditor', 'read_audit', '', 'reads the audit trail only'),
  ('researcher', 'find,get,deidentified_only', 'site', 'de-identified access only'),
  ('emergency', 'emergency_access', '', 'may open a study outside their scope, with a reason (break-glass)'),
  ('modality', 'echo,store', 'site', 'DICOM node: a modality stores images'),
  ('workstation', 'echo,find,get,move', 'site', 'DICOM node: a workstation queries and retrieves');

CREATE TABLE user (
  pk INTEGER PRIMARY KEY,
  username TEXT NOT NULL UNIQUE,      -- NFKC-normalised, lower case
  password_hash TEXT NOT NULL,        -- crypto_pwhash_str (Argon2id, parameters inside)
  roles TEXT NOT NULL,                -- comma-separated role names
  site TEXT NOT NULL,
  physician_name TEXT NOT NULL,       -- DICOM PN of this person as a referring physician ('' if none)
  groups TEXT NOT NULL,               -- comma-separated group names
  mfa_secret BLOB,                    -- sealed TOTP secret; NULL: not enrolled
  mfa_last_step INTEGER NOT NULL DEFAULT 0,  -- last accepted TOTP time step (each code works once)
  must_enrol INTEGER NOT NULL DEFAULT 1,     -- one-time password: must set a password and enrol MFA
  mfa_pending BLOB,                   -- sealed TOTP secret awaiting its first code (enrolment)
  disabled INTEGER NOT NULL DEFAULT 0,
  failed_logins INTEGER NOT NULL DEFAULT 0,  -- consecutive failures
  locked_until INTEGER NOT NULL DEFAULT 0,   -- unix seconds
  created INTEGER NOT NULL,
  password_changed INTEGER NOT NULL
);
CREATE TABLE recovery_code (
  user_pk INTEGER NOT NULL REFERENCES user(pk) ON DELETE CASCADE,
  code_hash BLOB NOT NULL,
  PRIMARY KEY (user_pk, code_hash)
) WITHOUT ROWID;
CREATE TABLE session (
  token_hash BLOB PRIMARY KEY,
  user_pk INTEGER NOT NULL REFERENCES user(pk) ON DELETE CASCADE,
  created INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  expires INTEGER NOT NULL            -- absolute lifetime
) WITHOUT ROWID;
CREATE INDEX session_user ON session(user_pk);
CREATE TABLE api_token (
  id TEXT PRIMARY KEY,                -- public part of the token
  secret_hash BLOB NOT NULL,
  user_pk INTEGER NOT NULL REFERENCES user(pk) ON DELETE CASCADE,
  name TEXT NOT NULL,
  permissions TEXT NOT NULL,          -- subset of the user's permissions
  created INTEGER NOT NULL,
  expires INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE access_grant (
  pk INTEGER PRIMARY KEY,
  grantee TEXT NOT NULL,              -- "user:NAME", "group:G", "node:AE"
  study_uid TEXT,                     -- a study, or
  patient_key BLOB,                   -- a patient (same HMAC as patient.pkey)
  kind TEXT NOT NULL,                 -- "grant" or "emergency"
  reason TEXT NOT NULL,
  granted_by TEXT NOT NULL,
  created INTEGER NOT NULL,
  expires INTEGER NOT NULL            -- 0: until revoked
);
CREATE INDEX access_grant_grantee ON access_grant(grantee);

ALTER TABLE study ADD COLUMN site TEXT NOT NULL DEFAULT 'main';
-- Patient rows are per site from now on (pkey = HMAC(PatientID, Issuer, site)): a
-- store at one site never reads or reuses another site's patient record.
-- pid_key = HMAC(PatientID, Issuer) links a patient across sites for patient
-- grants (rows written before this migration have none).
ALTER TABLE patient ADD COLUMN pid_key BLOB;
CREATE INDEX patient_pid_key ON patient(pid_key);
CREATE INDEX study_site ON study(site);
ALTER TABLE node ADD COLUMN site TEXT NOT NULL DEFAULT 'main';
ALTER TABLE node ADD COLUMN scope TEXT NOT NULL DEFAULT 'site';  -- "site" or "all"
