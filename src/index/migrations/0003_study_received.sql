-- When a study was first received (unix seconds), for retention rules
-- (0 for studies received before this migration: treated as old enough).
-- Administrators may delete studies (audited); the role gains the permission.
ALTER TABLE study ADD COLUMN received INTEGER NOT NULL DEFAULT 0;
UPDATE role SET permissions = permissions || ',delete' WHERE name = 'admin';
