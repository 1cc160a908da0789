import CairnFS
import Foundation
import Synchronization
import Testing

@Suite struct IdleMemoryReleaseTests {
    final class Releases: Sendable {
        let count = Mutex(0)
        func add() { count.withLock { $0 += 1 } }
        var value: Int { count.withLock { $0 } }
    }

    @Test func releasesOnceAQuietPeriodHasPassedAndAgainOnlyAfterNewRequests() {
        let releases = Releases()
        let idle = IdleMemoryRelease(period: 3600) { releases.add() }
        var w = IdleMemoryRelease.Watch()
        #expect(!idle.look(&w))  // the first look only notes the count
        #expect(idle.look(&w) && releases.value == 1)  // a whole period with no request
        #expect(!idle.look(&w) && releases.value == 1)  // still idle: nothing more to give back
        idle.noteRequest()
        #expect(!idle.look(&w))  // busy during the last period
        idle.noteRequest()
        #expect(!idle.look(&w))
        #expect(idle.look(&w) && releases.value == 2)  // quiet again after use
    }

    @Test func theWatcherThreadReleasesWhenNothingComes() async throws {
        let releases = Releases()
        let idle = IdleMemoryRelease(period: 0.05) { releases.add() }
        idle.start()
        let deadline = Date().addingTimeInterval(5)
        while releases.value == 0, Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(releases.value == 1)
    }
}
