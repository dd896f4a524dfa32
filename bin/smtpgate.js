#!/usr/bin/env node
// Entry point of the `smtpgate` command; the code is compiled to dist/ by
// `npm run build` (run automatically by `npm install` through "prepare").
import { main } from "../dist/src/cli.js";

process.exitCode = await main(process.argv.slice(2));
