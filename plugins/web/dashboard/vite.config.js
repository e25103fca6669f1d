// JSX is compiled by Vite's own esbuild (no React plugin: nothing here needs fast refresh in a
// build). Output goes where SYNTHORG_DASHBOARD_OUT says (the CMake build sets it), else dist/.
import { defineConfig } from 'vite'

export default defineConfig({
  esbuild: { jsx: 'automatic' },
  build: {
    outDir: process.env.SYNTHORG_DASHBOARD_OUT || 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    target: 'es2020',
  },
  server: {
    // `npm run dev` against a kernel on :3000 (the web plugin puts /api there).
    proxy: { '/api': { target: 'http://127.0.0.1:3000', ws: true } },
  },
})
