// The release, eval, load-test and feedback pages: each module registers its routes
// with route() from app.js when it is imported (main.js imports this one).
import "./pages_releases.js";
import "./pages_evals.js";
import "./pages_loadtests.js";
import "./pages_feedback.js";
