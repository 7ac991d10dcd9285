-- Patient/study/series/instance hierarchy. Identifying attributes live only
-- in the encrypted `phi` blobs; `*_token` tables hold keyed HMAC blind-index
-- tokens used for matching (see docs/index-encryption.md).
CREATE TABLE patient (
  pk INTEGER PRIMARY KEY,
  pkey BLOB NOT NULL UNIQUE,          -- HMAC(PatientID, Issuer): identity without the value
  phi BLOB NOT NULL                   -- AES-256-GCM(name, id, issuer, birth date, sex, other ids)
);
CREATE TABLE patient_token (
  token BLOB NOT NULL,
  patient_pk INTEGER NOT NULL REFERENCES patient(pk),
  PRIMARY KEY (token, patient_pk)
) WITHOUT ROWID;
CREATE TABLE study (
  pk INTEGER PRIMARY KEY,
  patient_pk INTEGER NOT NULL REFERENCES patient(pk),
  study_uid TEXT NOT NULL UNIQUE,
  study_date TEXT NOT NULL,
  study_time TEXT NOT NULL,
  description TEXT NOT NULL,
  phi BLOB NOT NULL                   -- AES-256-GCM(accession number, referring physician, study id)
);
CREATE INDEX study_patient ON study(patient_pk);
CREATE INDEX study_date_idx ON study(study_date);
CREATE TABLE study_token (
  token BLOB NOT NULL,
  study_pk INTEGER NOT NULL REFERENCES study(pk),
  PRIMARY KEY (token, study_pk)
) WITHOUT ROWID;
CREATE TABLE series (
  pk INTEGER PRIMARY KEY,
  study_pk INTEGER NOT NULL REFERENCES study(pk),
  series_uid TEXT NOT NULL UNIQUE,
  modality TEXT NOT NULL,
  series_number TEXT NOT NULL,
  description TEXT NOT NULL
);
CREATE INDEX series_study ON series(study_pk);
CREATE TABLE instance (
  pk INTEGER PRIMARY KEY,
  series_pk INTEGER NOT NULL REFERENCES series(pk),
  sop_uid TEXT NOT NULL UNIQUE,
  sop_class_uid TEXT NOT NULL,
  instance_number TEXT NOT NULL,
  transfer_syntax TEXT NOT NULL,
  charset TEXT NOT NULL,
  blob_id TEXT NOT NULL UNIQUE,
  size INTEGER NOT NULL,
  sha256 TEXT NOT NULL
);
CREATE INDEX instance_series ON instance(series_pk);
CREATE TABLE node (
  ae_title TEXT PRIMARY KEY,
  source_cidr TEXT NOT NULL,
  cert_sha256 TEXT NOT NULL,
  permissions TEXT NOT NULL,
  move_host TEXT NOT NULL,
  move_port INTEGER NOT NULL
);
