"""Scale-out scenario 3: kill the only worker: the api nodes download themselves; start it
again: it takes the downloads over again."""

import time
import unittest

from harness.fleet import FleetCase, log, wait_until

COUNT = 4


class FleetWorkerTest(FleetCase):
    users = COUNT

    def test_api_nodes_download_without_worker(self):
        api1 = self.start_node('api-1')
        api2 = self.start_node('api-2')
        worker = self.start_node('worker-1', role='worker')
        wait_until(lambda: len(self.nodes_view(api1)) == 3, 20, what='three nodes heartbeating')
        ids = self.register_all(api1, COUNT)
        self.wait_all_idle(api1, ids)
        time.sleep(2)  # the api nodes count the tasks queue's consumers about every second
        apis = (api1, api2)

        def local():
            return sum(self.metric(a, 'el_tasks_run_locally_total') for a in apis)

        def round_of(tag):
            subjects = {}
            for i in range(1, COUNT + 1):
                s = f'{tag} {i}'
                self.inject(f'user{i}', s)
                subjects[f'mb-user{i}'] = {s}
            self.wait_subjects(subjects, 60)

        round_of('with worker')
        consumed = self.metric(worker, 'el_tasks_consumed_total')
        self.assertGreaterEqual(consumed, 1)
        local_before = local()

        log('SIGKILL the worker')
        worker.kill()
        round_of('no worker')
        local_after = local()
        log(f'tasks run on the api nodes: {local_before} -> {local_after}')
        self.assertGreaterEqual(local_after - local_before, COUNT)

        log('worker back')
        worker.start()
        wait_until(lambda: self.metric(api1, 'el_tasks_run_locally_total') is not None, 5)
        # The api nodes see the consumer within about a second.
        wait_until(lambda: len(self.nodes_view(api1)) == 3, 20, what='worker heartbeating')
        time.sleep(2)
        round_of('worker again')
        self.assertGreaterEqual(self.metric(worker, 'el_tasks_consumed_total'), 1)
        self.assertEqual(local(), local_after, 'api nodes still downloading with a worker back')
        total, distinct, dups = self.duplicate_report()
        log(f'{total} deliveries for {distinct} emails, {dups} duplicates (same event id)')


if __name__ == '__main__':
    unittest.main()
