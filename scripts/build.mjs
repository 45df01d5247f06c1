// Builds the published package into dist/: one CommonJS build (what MikroORM 6 itself ships), plus for each
// entry point an ES module wrapper that re-exports the CommonJS exports by name. An application that loads
// the package both ways (require() and import) gets the same classes and the same AsyncLocalStorage, so
// `instanceof` and managed sessions work across both: there is one copy of the code, never two.
// `node scripts/build.mjs [outDir]`: into dist/, or into outDir (tests build a copy of their own there).
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const dist = process.argv[2] ? resolve(process.argv[2]) : join(root, 'dist');
/** The package's entry points: `mikro-orm-coaster`, `mikro-orm-coaster/primary`, `.../express`, `.../fastify`, `.../nestjs`. */
const entries = ['index', 'primary/index', 'sessions/express', 'sessions/fastify', 'nestjs/index'];

rmSync(dist, { recursive: true, force: true });
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', dist], {
  cwd: root,
  stdio: 'inherit',
});
// The package is "type": "module" for its own sources and tests; the build is CommonJS.
writeFileSync(join(dist, 'package.json'), `${JSON.stringify({ type: 'commonjs' }, null, 2)}\n`);

const require = createRequire(import.meta.url);
for (const entry of entries) {
  const names = Object.keys(require(join(dist, `${entry}.js`))).filter(name => name !== '__esModule');
  writeFileSync(
    join(dist, `${entry}.mjs`),
    `import cjs from './${basename(entry)}.js';\n\nexport const {\n${names.map(name => `  ${name},\n`).join('')}} = cjs;\n`,
  );
  writeFileSync(join(dist, `${entry}.d.mts`), `export * from './${basename(entry)}.js';\n`);
}
