// Starts the dashboard: every page module registers its routes on import.
import { start } from "./app.js";
import "./pages_rollouts.js";
import "./pages_runs.js";

start();
