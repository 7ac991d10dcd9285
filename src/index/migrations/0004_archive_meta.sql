-- Facts about the archive itself, e.g. that it has an audit trail: a trail
-- that disappears is then noticed instead of silently started anew.
CREATE TABLE archive_meta (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
