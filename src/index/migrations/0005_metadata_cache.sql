-- The DICOM JSON of instances, cached for WADO-RS /metadata: derived data,
-- made from the stored object on first request and rebuilt whenever absent.
-- Sealed with the PHI key (AES-256-GCM), bound to the instance and to the
-- bulk data URI prefix it was written with (a changed base_url is a miss).
CREATE TABLE instance_metadata (
  instance_pk INTEGER PRIMARY KEY REFERENCES instance(pk),
  sealed BLOB NOT NULL
);
