import { createServer, type AddressInfo } from 'node:net';

/** Ports this process handed out: the kernel may offer a just-closed port again before its user binds it. */
const handedOut = new Set<number>();

/**
 * A loopback port that was free a moment ago. Servers started on it must still check that what answers
 * is theirs (another process may bind it first); within this process the same port is never given twice.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.unref();
      server.on('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const { port } = server.address() as AddressInfo;
        server.close(() => resolve(port));
      });
    });
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}
