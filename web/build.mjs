// Builds the page into dist/ (index.html, app.js, app.css), which src/web.rs
// embeds in the tusk binary. Run: npm --prefix web ci && npm --prefix web run build
import { copyFile, mkdir, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'

const root = dirname(fileURLToPath(import.meta.url))
const dist = join(root, 'dist')
await mkdir(dist, { recursive: true })

const common = {
  bundle: true,
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
  target: ['chrome100', 'firefox100', 'safari15'],
}
await esbuild.build({
  ...common,
  entryPoints: [join(root, 'src/app.js')],
  outfile: join(dist, 'app.js'),
  format: 'iife',
  define: { 'process.env.NODE_ENV': '"production"' },
})
await esbuild.build({ ...common, entryPoints: [join(root, 'src/app.css')], outfile: join(dist, 'app.css') })
await copyFile(join(root, 'index.html'), join(dist, 'index.html'))

for (const f of ['index.html', 'app.js', 'app.css']) {
  const { size } = await stat(join(dist, f))
  console.log(`dist/${f}  ${(size / 1024).toFixed(1)} KiB`)
}
