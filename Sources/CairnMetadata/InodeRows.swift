import CairnCore
import GRDB
import GRDBSQLite

/// Inode rows (`MetadataStore.inodeColumns` from column `offset` on) decoded straight from
/// SQLite's statement. GRDB's `Row` builds a lowercased column-name index and copies every
/// value for each row it fetches; for the inode read or returned by nearly every request
/// (a lookup, getattr, each write's RETURNING) that was 6 % of the tracker's CPU in a setxattr
/// loop for the RETURNING row alone.
final class InodeRows: DatabaseCursor {
    typealias Element = InodeAttributes
    let _statement: Statement
    var _isDone = false
    private let offset: Int32

    init(_ statement: Statement, arguments: StatementArguments, offset: Int32 = 0) throws {
        _statement = statement
        self.offset = offset
        try statement.setArguments(arguments)  // resets the statement, then binds
    }

    deinit { sqlite3_reset(_statement.sqliteStatement) }  // as GRDB's cursors do; an error here was the step's

    /// The first row, if any (a write's RETURNING row: its change is made by this first step).
    static func first(_ statement: Statement, arguments: StatementArguments, offset: Int32 = 0) throws -> InodeAttributes? {
        try InodeRows(statement, arguments: arguments, offset: offset).next()
    }

    func _element(sqliteStatement s: SQLiteStatement) throws -> InodeAttributes {
        let i = offset
        func int(_ column: Int32) -> Int64 { sqlite3_column_int64(s, i + column) }
        func text(_ column: Int32) -> String? {
            sqlite3_column_type(s, i + column) == SQLITE_NULL ? nil : sqlite3_column_text(s, i + column).map { String(cString: $0) }
        }
        return InodeAttributes(ino: int(0), domain: DomainID(int(1)), kind: text(2).flatMap(InodeKind.init(rawValue:)) ?? .file,
                               mode: UInt32(truncatingIfNeeded: int(3)), uid: UInt32(truncatingIfNeeded: int(4)),
                               gid: UInt32(truncatingIfNeeded: int(5)), size: int(6), atime: int(7), mtime: int(8), ctime: int(9),
                               nlink: Int(int(10)), classID: ClassID(int(11)), checksum: text(12))
    }
}
