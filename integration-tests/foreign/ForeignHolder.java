// A Curator InterProcessMutex or ZooKeeper WriteLock-recipe holder for fencelock's
// mixed-fleet tests.
//
// usage: java ForeignHolder MODE CONNECT PATH HOLD_MS OUT
//
// MODE: curator (InterProcessMutex) or zkrecipe (org.apache.zookeeper.recipes.lock.WriteLock).
// Appends to OUT, one line each, wall-clock nanoseconds:
//   acquired <ns> <czxid of its own node> <node name>
//   released <ns>          (written before the node is deleted)

import java.io.FileWriter;
import java.io.IOException;
import java.time.Instant;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.retry.RetryNTimes;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.recipes.lock.LockListener;
import org.apache.zookeeper.recipes.lock.WriteLock;

public class ForeignHolder {
    /** InterProcessMutex keeps its node's path protected: expose it. */
    static class Mutex extends InterProcessMutex {
        Mutex(CuratorFramework client, String path) {
            super(client, path);
        }

        String nodePath() {
            return getLockPath();
        }
    }

    static long now() {
        Instant i = Instant.now();
        return i.getEpochSecond() * 1_000_000_000L + i.getNano();
    }

    static void log(String out, String line) throws IOException {
        try (FileWriter w = new FileWriter(out, true)) {
            w.write(line + "\n");
        }
    }

    static String name(String path) {
        return path.substring(path.lastIndexOf('/') + 1);
    }

    public static void main(String[] args) throws Exception {
        String mode = args[0], connect = args[1], path = args[2], out = args[4];
        long hold = Long.parseLong(args[3]);
        if (mode.equals("curator")) {
            CuratorFramework client = CuratorFrameworkFactory.newClient(connect, 10000, 10000, new RetryNTimes(3, 100));
            client.start();
            if (!client.blockUntilConnected(10, TimeUnit.SECONDS)) {
                throw new IllegalStateException("curator did not connect");
            }
            Mutex mutex = new Mutex(client, path);
            mutex.acquire();
            String node = mutex.nodePath();
            long czxid = client.checkExists().forPath(node).getCzxid();
            log(out, "acquired " + now() + " " + czxid + " " + name(node));
            Thread.sleep(hold);
            log(out, "released " + now());
            mutex.release();
            client.close();
        } else if (mode.equals("zkrecipe")) {
            CountDownLatch connected = new CountDownLatch(1);
            ZooKeeper zk = new ZooKeeper(connect, 10000, event -> {
                if (event.getState() == Watcher.Event.KeeperState.SyncConnected) {
                    connected.countDown();
                }
            });
            if (!connected.await(10, TimeUnit.SECONDS)) {
                throw new IllegalStateException("zookeeper did not connect");
            }
            CountDownLatch acquired = new CountDownLatch(1);
            WriteLock lock = new WriteLock(zk, path, ZooDefs.Ids.OPEN_ACL_UNSAFE, new LockListener() {
                public void lockAcquired() {
                    acquired.countDown();
                }

                public void lockReleased() {}
            });
            if (!lock.lock()) {
                acquired.await();
            }
            String node = lock.getId();
            long czxid = zk.exists(node, false).getCzxid();
            log(out, "acquired " + now() + " " + czxid + " " + name(node));
            Thread.sleep(hold);
            log(out, "released " + now());
            lock.unlock();
            lock.close();
            zk.close();
        } else {
            throw new IllegalArgumentException("mode " + mode + " is not curator or zkrecipe");
        }
    }
}
