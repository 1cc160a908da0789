import GRDB

/// Versioned schema migrations. Each migration is append-only: never edit a shipped one.
enum Schema {
    static func migrator() -> DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
            CREATE TABLE domain(
              dmid INTEGER PRIMARY KEY AUTOINCREMENT,
              name TEXT NOT NULL UNIQUE,
              root INTEGER NOT NULL);
            CREATE TABLE class(
              dmid INTEGER NOT NULL REFERENCES domain ON DELETE CASCADE,
              classid INTEGER NOT NULL,
              name TEXT NOT NULL,
              replicas INTEGER NOT NULL,
              sync_copies INTEGER NOT NULL,
              policy TEXT NOT NULL,
              checksum TEXT NOT NULL,
              chunk_size INTEGER NOT NULL,
              PRIMARY KEY(dmid, classid),
              UNIQUE(dmid, name));
            CREATE TABLE host(
              hostid INTEGER PRIMARY KEY AUTOINCREMENT,
              name TEXT NOT NULL UNIQUE,
              ip TEXT NOT NULL,
              port INTEGER NOT NULL,
              get_port INTEGER,
              status TEXT NOT NULL,
              observed TEXT NOT NULL DEFAULT 'unknown',
              last_seen INTEGER);
            -- device ids come from this sequence so they are never reused, even after deletion.
            CREATE TABLE device_seq(devid INTEGER PRIMARY KEY AUTOINCREMENT);
            CREATE TABLE device(
              devid INTEGER PRIMARY KEY,
              hostid INTEGER NOT NULL REFERENCES host,
              status TEXT NOT NULL,
              weight INTEGER NOT NULL DEFAULT 100,
              total_bytes INTEGER NOT NULL DEFAULT 0,
              used_bytes INTEGER NOT NULL DEFAULT 0,
              free_bytes INTEGER NOT NULL DEFAULT 0,
              io_util REAL NOT NULL DEFAULT 0,
              observed TEXT NOT NULL DEFAULT 'unknown',
              usage_at INTEGER);
            CREATE TABLE inode(
              ino INTEGER PRIMARY KEY AUTOINCREMENT,
              dmid INTEGER NOT NULL,
              kind TEXT NOT NULL,
              mode INTEGER NOT NULL,
              uid INTEGER NOT NULL DEFAULT 0,
              gid INTEGER NOT NULL DEFAULT 0,
              size INTEGER NOT NULL DEFAULT 0,
              atime INTEGER NOT NULL,
              mtime INTEGER NOT NULL,
              ctime INTEGER NOT NULL,
              nlink INTEGER NOT NULL DEFAULT 1,
              classid INTEGER NOT NULL DEFAULT 0,
              target BLOB,
              checksum TEXT);
            -- path is the full key under the domain: MogileFS's key lookups and list_keys
            -- become one indexed query; renaming a directory rewrites its subtree's paths.
            CREATE TABLE dirent(
              parent INTEGER NOT NULL,
              name TEXT NOT NULL,
              ino INTEGER NOT NULL,
              dmid INTEGER NOT NULL,
              path TEXT NOT NULL,
              PRIMARY KEY(parent, name)) WITHOUT ROWID;
            CREATE UNIQUE INDEX dirent_path ON dirent(dmid, path);
            CREATE INDEX dirent_ino ON dirent(ino);
            CREATE TABLE xattr(
              ino INTEGER NOT NULL,
              name TEXT NOT NULL,
              value BLOB NOT NULL,
              PRIMARY KEY(ino, name)) WITHOUT ROWID;
            CREATE TABLE chunk(
              ino INTEGER NOT NULL,
              idx INTEGER NOT NULL,
              fid INTEGER NOT NULL,
              length INTEGER NOT NULL,
              PRIMARY KEY(ino, idx)) WITHOUT ROWID;
            CREATE INDEX chunk_fid ON chunk(fid);
            -- Committed blobs.
            CREATE TABLE blob(
              fid INTEGER PRIMARY KEY,
              dmid INTEGER NOT NULL,
              classid INTEGER NOT NULL,
              length INTEGER NOT NULL,
              checksum TEXT);
            -- Open uploads; AUTOINCREMENT makes this the fid generator that never reuses a fid.
            CREATE TABLE tempfile(
              fid INTEGER PRIMARY KEY AUTOINCREMENT,
              created INTEGER NOT NULL,
              dmid INTEGER NOT NULL,
              classid INTEGER NOT NULL,
              key TEXT NOT NULL,
              devids TEXT NOT NULL);
            CREATE TABLE file_on(
              fid INTEGER NOT NULL,
              devid INTEGER NOT NULL,
              PRIMARY KEY(fid, devid)) WITHOUT ROWID;
            CREATE INDEX file_on_devid ON file_on(devid);
            CREATE TABLE replicate_queue(
              fid INTEGER PRIMARY KEY,
              nexttry INTEGER NOT NULL,
              failcount INTEGER NOT NULL DEFAULT 0);
            CREATE TABLE delete_queue(
              fid INTEGER PRIMARY KEY,
              nexttry INTEGER NOT NULL,
              failcount INTEGER NOT NULL DEFAULT 0);
            CREATE TABLE setting(
              key TEXT PRIMARY KEY,
              value TEXT NOT NULL);
            """)
        }
        m.registerMigration("v2: self-healing") { db in
            try db.execute(sql: """
            -- When the monitor first saw the device unreachable (reaper grace period).
            ALTER TABLE device ADD COLUMN unreachable_since INTEGER;
            -- What fsck found, by domain and key (not only fid).
            CREATE TABLE fsck_finding(
              id INTEGER PRIMARY KEY AUTOINCREMENT,
              at INTEGER NOT NULL,
              fid INTEGER,
              devid INTEGER,
              dmid INTEGER,
              key TEXT,
              kind TEXT NOT NULL,
              detail TEXT NOT NULL,
              repaired INTEGER NOT NULL DEFAULT 0);
            -- Blobs to check now (reported by a storage node's scrubber).
            CREATE TABLE fsck_queue(
              fid INTEGER PRIMARY KEY,
              reason TEXT NOT NULL);
            -- Copies to move (drain and rebalance): copy to to_dev (or a device placement
            -- picks when NULL), verify, then drop the copy on from_dev.
            CREATE TABLE move_queue(
              fid INTEGER NOT NULL,
              from_dev INTEGER NOT NULL,
              to_dev INTEGER,
              bytes INTEGER NOT NULL,
              reason TEXT NOT NULL,
              nexttry INTEGER NOT NULL DEFAULT 0,
              failcount INTEGER NOT NULL DEFAULT 0,
              PRIMARY KEY(fid, from_dev));
            """)
        }
        m.registerMigration("v3: storage sidecars") { db in
            // Inodes whose sidecars (the copy of their metadata beside each blob) are stale.
            // Triggers queue every change, so no code path can forget to.
            // An upsert, not INSERT OR REPLACE: an outer statement's conflict clause would override that.
            let queue = "INSERT INTO sidecar_queue(ino, queued)"
            let upsert = "ON CONFLICT(ino) DO UPDATE SET queued = excluded.queued"
            let now = "CAST(strftime('%s','now') AS INTEGER)"
            try db.execute(sql: """
            CREATE TABLE sidecar_queue(
              ino INTEGER PRIMARY KEY,
              queued INTEGER NOT NULL);
            CREATE TRIGGER sidecar_chunk AFTER INSERT ON chunk BEGIN \(queue) VALUES (NEW.ino, \(now)) \(upsert); END;
            CREATE TRIGGER sidecar_inode AFTER UPDATE ON inode WHEN NEW.kind = 'f' BEGIN \(queue) VALUES (NEW.ino, \(now)) \(upsert); END;
            CREATE TRIGGER sidecar_dirent_insert AFTER INSERT ON dirent BEGIN \(queue) VALUES (NEW.ino, \(now)) \(upsert); END;
            CREATE TRIGGER sidecar_dirent_update AFTER UPDATE ON dirent BEGIN \(queue) VALUES (NEW.ino, \(now)) \(upsert); END;
            CREATE TRIGGER sidecar_dirent_delete AFTER DELETE ON dirent BEGIN \(queue) VALUES (OLD.ino, \(now)) \(upsert); END;
            CREATE TRIGGER sidecar_xattr_insert AFTER INSERT ON xattr BEGIN \(queue) VALUES (NEW.ino, \(now)) \(upsert); END;
            CREATE TRIGGER sidecar_xattr_update AFTER UPDATE ON xattr BEGIN \(queue) VALUES (NEW.ino, \(now)) \(upsert); END;
            CREATE TRIGGER sidecar_xattr_delete AFTER DELETE ON xattr BEGIN \(queue) VALUES (OLD.ino, \(now)) \(upsert); END;
            CREATE TRIGGER sidecar_copy AFTER INSERT ON file_on BEGIN
              \(queue) SELECT ino, \(now) FROM chunk WHERE fid = NEW.fid \(upsert);
            END;
            """)
        }
        m.registerMigration("v4: directories that name a class") { db in
            // Almost always empty: a create asks it whether any directory of its domain names a
            // class before walking up its path to find the nearest one.
            try db.execute(sql: "CREATE INDEX inode_class_dir ON inode(dmid) WHERE kind = 'd' AND classid != 0")
        }
        m.registerMigration("v5: sidecar triggers skip inodes already queued this second") { db in
            // A copied file changes its inode, names and copies nine times in a few
            // milliseconds; each upsert rewrote the same row with the same second. A probe of
            // the queue's primary key now stands in for all but the first.
            let now = "CAST(strftime('%s','now') AS INTEGER)"
            let queue = "INSERT INTO sidecar_queue(ino, queued)"
            let upsert = "ON CONFLICT(ino) DO UPDATE SET queued = excluded.queued"
            func fresh(_ ino: String) -> String { "NOT EXISTS (SELECT 1 FROM sidecar_queue WHERE ino = \(ino) AND queued >= \(now))" }
            var sql = ""
            for (name, event, row, condition) in [("sidecar_chunk", "INSERT ON chunk", "NEW", ""),
                                                  ("sidecar_inode", "UPDATE ON inode", "NEW", "NEW.kind = 'f' AND "),
                                                  ("sidecar_dirent_insert", "INSERT ON dirent", "NEW", ""),
                                                  ("sidecar_dirent_update", "UPDATE ON dirent", "NEW", ""),
                                                  ("sidecar_dirent_delete", "DELETE ON dirent", "OLD", ""),
                                                  ("sidecar_xattr_insert", "INSERT ON xattr", "NEW", ""),
                                                  ("sidecar_xattr_update", "UPDATE ON xattr", "NEW", ""),
                                                  ("sidecar_xattr_delete", "DELETE ON xattr", "OLD", "")] {
                sql += """
                DROP TRIGGER \(name);
                CREATE TRIGGER \(name) AFTER \(event) WHEN \(condition)\(fresh("\(row).ino"))
                BEGIN \(queue) VALUES (\(row).ino, \(now)) \(upsert); END;

                """
            }
            sql += """
            DROP TRIGGER sidecar_copy;
            CREATE TRIGGER sidecar_copy AFTER INSERT ON file_on BEGIN
              \(queue) SELECT c.ino, \(now) FROM chunk c WHERE c.fid = NEW.fid AND \(fresh("c.ino")) \(upsert);
            END;
            """
            try db.execute(sql: sql)
        }
        return m
    }
}
