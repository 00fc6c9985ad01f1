/* process-tracker: the monitoring webapp's front end. Plain JavaScript, no build step, no framework.
 *
 * DSS injects this file after body.html, with its standard `dataiku` library (getWebAppBackendUrl). Every call
 * goes to the webapp's backend (JSON API in docs/webapp-api.md); plotly.js is loaded from the backend too,
 * never from a CDN. Data is only ever inserted with textContent or DOM properties (never innerHTML): notebook
 * names, project keys and messages come from users.
 */
(function () {
    "use strict";

    var REFRESH_MS = 30000;
    var ACTIONS = {
        notebook_session: { verb: "Unload kernel", done: "unload" },
        future: { verb: "Abort task", done: "abort" },
        scenario: { verb: "Abort scenario", done: "abort" },
        job: { verb: "Abort job", done: "abort" },
        webapp: { verb: "Stop backend", done: "stop" },
        continuous_activity: { verb: "Stop", done: "stop" },
        code_studio: { verb: "Stop", done: "stop" }
    };
    var KIND_LABELS = {
        notebook_session: "notebook",
        future: "task",
        scenario: "scenario",
        job: "job",
        webapp: "webapp",
        continuous_activity: "continuous activity",
        code_studio: "code studio"
    };
    var VIA = { // how the backend tied a process to its activity (row.via)
        session_pid: "the kernel pid DSS reports for this notebook session",
        job_pid: "the job kernel pid DSS reports for this job",
        webapp_pid: "the backend pid DSS reports for this webapp",
        pid: "the pid DSS reports",
        kernel_id: "the kernel id in the kernel's connection file",
        cru: "DSS's compute-resource-usage record for this pid in its audit log",
        ancestor: "a child of a process DSS reports for this activity",
        wrapped: "a user-isolation wrapper around the activity's process"
    };
    // where what a row says comes from (row.source): DSS's API, or DSS's own records without it (issue 15)
    var SOURCES = {
        api: "via the DSS API",
        cru: "via DSS audit log (CRU)",
        cgroup: "via DSS cgroup path",
        tree: "via its parent process"
    };
    var STATUSES = { // row.status, when it needs saying
        explained: "explained: DSS's own records say what it is (no activity DSS lists for it)",
        unverified: "unverified: it claims a notebook session but fails the checks, so it is not charged to it",
        pool: "a pre-started job kernel no running job uses",
        unjoined: "a DSS process DSS's API names no activity for"
    };
    var STATUS_BADGES = { explained: "explained", unverified: "unverified claim" };
    var CONTEXT_KINDS = { // DSS's compute-resource-usage context types and cgroup workloads (row.context_kind)
        JOB_ACTIVITY: "recipe (job activity)",
        JOB_MAIN_PROCESS: "job kernel",
        ANALYSIS_ML_TRAIN: "ML training",
        JUPYTER_NOTEBOOK_KERNEL: "notebook kernel",
        WEBAPP_BACKEND: "webapp backend",
        EDA: "statistics (EDA)"
    };
    var OUTCOMES = {
        would_act: "Would be stopped",
        spared: "Spared: not stopped",
        warned: "Warned: not stopped unless you stop it anyway",
        aborted: "Done",
        abort_requested: "Requested: DSS is still stopping it",
        already_finished: "It had already finished",
        finished_before_abort: "It finished on its own before the request",
        failed: "Failed"
    };
    var COLUMNS = [
        { key: "role_display", title: "Role", type: "text" },
        { key: "pid", title: "PID", type: "number" },
        { key: "project_key", title: "Project", type: "text" },
        { key: "activity_name", title: "Notebook / job / task", type: "text" },
        { key: "owner", title: "User", type: "text" },
        { key: "age_seconds", title: "Age", type: "duration" },
        { key: "idle_seconds", title: "Idle", type: "duration" },
        { key: "rss_anon_bytes", title: "Memory (RssAnon)", type: "bytes" },
        { key: "rss_bytes", title: "RSS", type: "bytes" },
        { key: "state", title: "State", type: "text" },
        { key: "source", title: "Known from", type: "text" }
    ];
    var ORPHAN_COLUMNS = [
        { key: "role_display", title: "Role", type: "text" },
        { key: "pid", title: "PID", type: "number" },
        { key: "label", title: "Process", type: "text" },
        { key: "user", title: "Unix user", type: "text" },
        { key: "age_seconds", title: "Age", type: "duration" },
        { key: "rss_anon_bytes", title: "Memory (RssAnon)", type: "bytes" },
        { key: "rss_bytes", title: "RSS", type: "bytes" }
    ];

    var INSTANCE_COLUMN = { key: "instance", title: "DSS instance", type: "path" };
    var WHERE_COLUMN = { key: "where", title: "Where", type: "text" };
    var REASON_COLUMN = { key: "reason", title: "Why", type: "text" };

    /** `columns` plus a "Where" column after the role when DSS's pods are listed beside the host's processes
     * (rows then carry `where`: the host name, or k8s/<node> for a pod). */
    function withWhere(columns, rows) {
        if (!rows.some(function (r) { return r.pod; })) return columns;
        return [columns[0], WHERE_COLUMN].concat(columns.slice(1));
    }

    /** `columns` plus a DSS instance column after the role when the rows come from several instances. */
    function withInstance(columns, rows) {
        var seen = {};
        rows.forEach(function (r) { if (r.instance) seen[r.instance] = true; });
        if (Object.keys(seen).length < 2) return columns;
        return [columns[0], INSTANCE_COLUMN].concat(columns.slice(1));
    }

    var state = {
        whoami: null,
        snapshot: null,
        table: null,
        history: null,
        window: "24h",
        node: "",
        tab: "overview",
        sort: { key: "rss_anon_bytes", dir: -1 },
        orphanSort: { key: "rss_anon_bytes", dir: -1 },
        figures: {}, // element id -> figure waiting to be drawn (drawn when its tab is visible)
        plotly: null, // a promise, resolved when plotly.js is loaded
        timer: null,
        busy: false,
        dialogBusy: false,
        listingRetry: null // a timer: the DSS views are loaded again while DSS is still listing
    };

    // ---------------------------------------------------------------- helpers

    function $(id) {
        return document.getElementById(id);
    }

    /** Build an element. `props` are DOM properties (textContent, className, title, onclick...), never HTML. */
    function h(tag, props, children) {
        var el = document.createElement(tag);
        Object.keys(props || {}).forEach(function (k) {
            if (k === "dataset") {
                Object.keys(props.dataset).forEach(function (d) { el.dataset[d] = props.dataset[d]; });
            } else if (k === "style") {
                el.style.cssText = props.style;
            } else if (k === "role" || k.indexOf("aria-") === 0) {
                el.setAttribute(k, props[k]);
            } else {
                el[k] = props[k];
            }
        });
        (children || []).forEach(function (c) {
            if (c === null || c === undefined) return;
            el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
        });
        return el;
    }

    function clear(el) {
        while (el.firstChild) el.removeChild(el.firstChild);
        return el;
    }

    function backendUrl(path) {
        if (window.dataiku && typeof window.dataiku.getWebAppBackendUrl === "function") {
            return window.dataiku.getWebAppBackendUrl(path);
        }
        return window.getWebAppBackendUrl(path);
    }

    /** Call the backend; resolves with the JSON body, rejects with an Error carrying `code` and `status`. */
    function api(path, body) {
        var opts = { credentials: "same-origin", headers: { Accept: "application/json" } };
        if (body !== undefined) {
            opts.method = "POST";
            opts.headers["Content-Type"] = "application/json";
            opts.headers["X-Process-Tracker-CSRF"] = "1";
            opts.body = JSON.stringify(body);
        }
        return fetch(backendUrl(path), opts).then(function (resp) {
            return resp.text().then(function (text) {
                var data = null;
                try {
                    data = JSON.parse(text);
                } catch (e) {
                    data = null;
                }
                if (!resp.ok || data === null) {
                    var err = data && data.error ? data.error : null;
                    var error = new Error(err ? err.message : "the backend answered HTTP " + resp.status);
                    error.code = err ? err.code : "http_" + resp.status;
                    error.status = resp.status;
                    throw error;
                }
                return data;
            });
        });
    }

    function formatBytes(n) {
        if (n === null || n === undefined) return "";
        var mib = n / 1048576;
        if (mib >= 1024) return (mib / 1024).toFixed(mib >= 10240 ? 0 : 1) + " GiB";
        if (mib >= 10) return mib.toFixed(0) + " MiB";
        return mib.toFixed(1) + " MiB";
    }

    function formatDuration(s) {
        if (s === null || s === undefined) return "";
        s = Math.max(0, Math.round(s));
        if (s < 60) return s + " s";
        if (s < 3600) return Math.floor(s / 60) + " min";
        if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
        return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
    }

    function pad2(n) {
        return (n < 10 ? "0" : "") + n;
    }

    /** Every time on the page: 24-hour, in UTC, the zone shown ("14:05:09 UTC"), as the charts' axes and the
     * macros' reports show times. */
    function formatTime(epochS) {
        if (!epochS) return "";
        var d = new Date(epochS * 1000);
        return pad2(d.getUTCHours()) + ":" + pad2(d.getUTCMinutes()) + ":" + pad2(d.getUTCSeconds()) + " UTC";
    }

    /** An activity state in one casing everywhere: "RUNNING", "idle" -> "Running", "Idle". */
    function formatState(value) {
        var text = String(value).replace(/_/g, " ").trim().toLowerCase();
        return text.charAt(0).toUpperCase() + text.slice(1);
    }

    var PATH_CHARS = 32; // the longest DSS data directory shown in a cell (the full path is in its tooltip)

    /** A DSS data directory, short, keeping its END (what tells instances apart): its last two components
     * ("\u2026/dss_data/design"), else its last one, else its last PATH_CHARS characters, always cut at the start. */
    function shortPath(path) {
        var full = String(path);
        var parts = full.split("/").filter(function (p) { return p; });
        var options = [parts.length > 2 ? "\u2026/" + parts.slice(-2).join("/") : full, "\u2026/" + parts.slice(-1)];
        var fitting = options.filter(function (t) { return t.length <= PATH_CHARS; });
        return fitting.length ? fitting[0] : "\u2026" + full.slice(full.length - PATH_CHARS + 1);
    }

    function formatCell(col, value) {
        if (col.type === "path") return value ? shortPath(value) : "";
        if (col.key === "state" && value) return formatState(value);
        if (col.type === "bytes") return formatBytes(value);
        if (col.type === "duration") return formatDuration(value);
        if (value === null || value === undefined) return "";
        return String(value);
    }

    // ---------------------------------------------------------------- banners

    /** One banner per key, replaced on each refresh. `lines` are extra text lines (a list of errors). */
    function setBanner(key, level, text, lines) {
        var box = $("pt-banners");
        var old = box.querySelector('[data-key="' + key + '"]');
        var banner = h("div", { className: "pt-banner pt-banner-" + level, dataset: { key: key }, role: "status" }, [
            h("span", { className: "pt-banner-text", textContent: text })
        ]);
        if (lines && lines.length) {
            banner.appendChild(h("ul", {}, lines.map(function (l) { return h("li", { textContent: l }); })));
        }
        if (old) box.replaceChild(banner, old);
        else box.appendChild(banner);
    }

    function clearBanner(key) {
        var old = $("pt-banners").querySelector('[data-key="' + key + '"]');
        if (old) old.parentNode.removeChild(old);
    }

    function failed(what, key) {
        return function (error) {
            setBanner(key, "error", "Could not load " + what + ": " + error.message);
        };
    }

    // ---------------------------------------------------------------- charts

    function loadPlotly() {
        if (state.plotly) return state.plotly;
        state.plotly = new Promise(function (resolve, reject) {
            if (window.Plotly) {
                resolve(window.Plotly);
                return;
            }
            var script = document.createElement("script");
            script.src = backendUrl("/plotly.min.js");
            script.onload = function () { resolve(window.Plotly); };
            script.onerror = function () { reject(new Error("plotly.js could not be loaded from the backend")); };
            document.head.appendChild(script);
        });
        state.plotly.catch(function (error) {
            setBanner("plotly", "error", "Charts are unavailable: " + error.message);
        });
        return state.plotly;
    }

    function isVisible(el) {
        return el.offsetParent !== null && el.clientWidth > 0;
    }

    function hasData(fig) {
        return fig && fig.data && fig.data.some(function (trace) {
            var values = trace.values || trace.y || trace.x || [];
            return values.length > 0;
        });
    }

    /** Draw `fig` in element `id` now if visible, else when its tab is shown. `empty` is shown when no data. */
    function showFigure(id, fig, empty) {
        var el = $(id);
        if (!hasData(fig)) {
            state.figures[id] = null;
            if (window.Plotly) window.Plotly.purge(el);
            clear(el).appendChild(h("p", { className: "pt-empty", textContent: empty }));
            el.dataset.empty = "true";
            return;
        }
        state.figures[id] = fig;
        drawIfVisible(id);
    }

    function drawIfVisible(id) {
        var el = $(id);
        var fig = state.figures[id];
        if (!fig || !isVisible(el)) return;
        state.figures[id] = null;
        loadPlotly().then(function (Plotly) {
            if (el.dataset.empty === "true") {
                clear(el);
                delete el.dataset.empty;
            }
            // The card already has a heading: drop the figure's own title and the room kept for it.
            var layout = Object.assign({}, fig.layout || {}, { autosize: true });
            delete layout.width;
            delete layout.height;
            delete layout.title;
            layout.margin = Object.assign({}, layout.margin || {}, { t: 24 });
            // keep the user's zoom, treemap level and hidden legend entries across auto refreshes (not across windows)
            layout.uirevision = id + ":" + state.window;
            return Plotly.react(el, fig.data, layout, {
                displaylogo: false,
                responsive: true,
                modeBarButtonsToRemove: ["lasso2d", "select2d"]
            });
        }).then(function () {
            el.dataset.rendered = "true";
        }, function () { /* reported by loadPlotly's banner */ });
    }

    function drawVisibleFigures() {
        Object.keys(state.figures).forEach(drawIfVisible);
        if (window.Plotly) {
            document.querySelectorAll(".pt-panel:not([hidden]) .js-plotly-plot").forEach(function (el) {
                window.Plotly.Plots.resize(el);
            });
        }
    }

    // ---------------------------------------------------------------- identity

    function renderWhoami() {
        var who = state.whoami;
        var el = $("pt-identity");
        if (!who || !who.user) {
            el.textContent = "Not identified";
            el.dataset.state = "unknown";
            el.title = (who && who.reason) || "DSS did not say who you are";
        } else if (who.can_act) {
            el.textContent = who.user + " \u00b7 can stop activities";
            el.dataset.state = "can-act";
            el.title = "You are a DSS administrator or a member of a group allowed to act.";
        } else {
            el.textContent = who.user + " \u00b7 view only";
            el.dataset.state = "view-only";
            el.title = who.reason || "";
        }
        if (who && !who.can_act) {
            setBanner("identity", "info", "You can see everything here but not stop anything: " +
                (who.reason || "only DSS administrators and the groups allowed in the webapp's settings can."));
        } else {
            clearBanner("identity");
        }
    }

    function loadWhoami() {
        return api("/api/whoami").then(function (who) {
            state.whoami = who;
            clearBanner("whoami");
            renderWhoami();
            if (state.table) renderTable();
        }, function (error) {
            state.whoami = { user: null, can_act: false, reason: error.message };
            renderWhoami();
        });
    }

    // ---------------------------------------------------------------- snapshot

    function roleColours() {
        var colours = {};
        ((state.snapshot && state.snapshot.roles) || []).forEach(function (r) { colours[r.role] = r.colour; });
        return colours;
    }

    function renderSummary(snap) {
        var box = clear($("pt-summary"));
        var roles = (snap.roles || []).slice().sort(function (a, b) {
            return (b.rss_anon_bytes || 0) - (a.rss_anon_bytes || 0);
        });
        roles.forEach(function (r) {
            box.appendChild(h("div", { className: "pt-chip", title: (r.count || 0) + " processes, RSS " + formatBytes(r.rss_bytes) +
                    ", CPU " + (r.cpu_percent === null || r.cpu_percent === undefined ? "?" : r.cpu_percent.toFixed(0)) + "%" }, [
                h("span", { className: "pt-dot", style: "background:" + safeColour(r.colour) }),
                h("span", { className: "pt-chip-name", textContent: r.display || r.role }),
                h("span", { className: "pt-chip-count", textContent: "\u00d7" + (r.count || 0) }),
                h("span", { className: "pt-chip-mem", textContent: formatBytes(r.rss_anon_bytes) })
            ]));
        });
    }

    /** A colour from the backend, used in a style: only #hex, rgb()/rgba() or a plain name pass. */
    function safeColour(c) {
        return /^(#[0-9a-fA-F]{3,8}|rgba?\([0-9., ]+\)|[a-zA-Z]+)$/.test(c || "") ? c : "#999";
    }

    function renderFooter(snap) {
        var parts = [];
        var s = snap.sampler || {};
        if (s.interval_seconds) parts.push("Sampled every " + s.interval_seconds + " s");
        if (s.scan_seconds !== undefined && s.scan_seconds !== null) parts.push("last scan " + s.scan_seconds.toFixed(2) + " s");
        if (s.cpu_percent_of_core !== undefined && s.cpu_percent_of_core !== null) {
            parts.push("sampler cost " + s.cpu_percent_of_core.toFixed(1) + "% of one core");
        }
        if (s.rows !== undefined && s.rows !== null) parts.push(s.rows.toLocaleString() + " history rows");
        if (s.db_bytes !== undefined && s.db_bytes !== null) parts.push("history " + formatBytes(s.db_bytes));
        if (s.errors) parts.push(s.errors + " sampler errors");
        (s.dss_records_notes || []).forEach(function (note) { parts.push(note); });
        var st = snap.stats || {};
        if (st.seen !== undefined) {
            parts.push(st.seen + " processes seen, " + (st.classified || 0) + " with a DSS role" +
                (st.access_denied ? ", " + st.access_denied + " unreadable" : "") +
                (st.vanished ? ", " + st.vanished + " vanished during the scan" : ""));
        }
        var v = snap.versions || {};
        if (v.dss) parts.push("DSS " + v.dss);
        if (v.dataikuapi) parts.push("dataikuapi " + v.dataikuapi);
        $("pt-footer").textContent = parts.join(" \u00b7 ");
    }

    /** How old the DSS listing is, when it matters (a slow call, a failed refresh): from the latest answer. */
    function renderListingAge(listing) {
        if (listing && listing.note) setBanner("listing-age", "info", listing.note + ".");
        else clearBanner("listing-age");
    }

    /** DSS is still listing: the host views are shown now, the joined ones again a few seconds later (once). */
    function retryWhileListing(listing) {
        if (!listing || !listing.refreshing || state.listingRetry) return;
        state.listingRetry = setTimeout(function () {
            state.listingRetry = null;
            if (!state.dialogBusy) Promise.all([loadSnapshot(), loadTable()]);
        }, 3000);
    }

    /** The history store's state: a notice when a damaged file was replaced, a reason when it cannot be written. */
    function renderHistoryState(history) {
        if (history && history.notice) setBanner("history-notice", "warning", history.notice);
        else clearBanner("history-notice");
        if (history && history.reason) setBanner("history-state", "error", "The history cannot be used: " + history.reason);
        else clearBanner("history-state");
    }

    function renderSnapshot() {
        var snap = state.snapshot;
        $("pt-host").textContent = snap.host ? "on " + snap.host : "";
        $("pt-updated").textContent = snap.taken_at ? "sample of " + formatTime(snap.taken_at) : "no sample yet";
        if (snap.on_host === false) {
            setBanner("degraded", "warning", "Host views are empty: " + (snap.degraded_reason ||
                "this backend does not run on the DSS host.") + " What DSS's API lists (Processes & activities) still works.");
        } else {
            clearBanner("degraded");
        }
        renderApiError();
        renderSummary(snap);
        renderFooter(snap);
        var figs = snap.figures || {};
        var noHost = snap.on_host === false ? "No host data (see the banner above)." : "No data yet.";
        showFigure("pt-chart-treemap", figs.treemap, noHost);
        showFigure("pt-chart-kernels", figs.kernels_idle_memory, snap.on_host === false ? noHost : "No Jupyter kernel is running.");
        showFigure("pt-chart-java", figs.java_xmx, snap.on_host === false ? noHost : "No Java process found.");
        showFigure("pt-chart-cgroups", figs.cgroups, "No DSS cgroup on this host: DSS's cgroups integration is not enabled, " +
            "or this backend cannot see it.");
    }

    function loadSnapshot() {
        return api("/api/snapshot").then(function (snap) {
            state.snapshot = snap;
            clearBanner("snapshot");
            renderListingAge(snap.listing);
            retryWhileListing(snap.listing);
            renderHistoryState(snap.history_state);
            renderSnapshot();
            if (state.table) renderTable();
        }, failed("the host snapshot", "snapshot"));
    }

    // ---------------------------------------------------------------- history

    function renderHistory() {
        var hist = state.history;
        document.querySelectorAll(".pt-window [data-window]").forEach(function (b) {
            b.setAttribute("aria-pressed", b.dataset.window === state.window ? "true" : "false");
        });
        $("pt-history-points").textContent = hist.points ? hist.points + " samples over the last " + hist.window +
            (hist.step_seconds ? ", one point per " + formatDuration(hist.step_seconds) : "") +
            (hist.source === "prometheus" ? ", from Prometheus (" + (hist.node || "all nodes") + ")" : "") + "." : "";
        var figs = hist.figures || {};
        var empty = "No history yet: the sampler records a sample every few seconds.";
        showFigure("pt-chart-memory-history", figs.memory_by_role, empty);
        showFigure("pt-chart-count-history", figs.count_by_role, empty);
        showFigure("pt-chart-oom", figs.oom_kills, hist.source === "prometheus" ?
            "OOM kills over time come from this backend's own history (not from Prometheus)." :
            "No DSS cgroup with a readable OOM-kill counter in the history of the last " + hist.window + ".");
    }

    // Prometheus mode (the "Prometheus URL" setting): a node selector over every DSS host Prometheus scrapes.
    function renderNodes(data) {
        var wrap = $("pt-node-wrap"), select = $("pt-node");
        if (!data || data.source !== "prometheus") {
            wrap.hidden = true;
            return;
        }
        clearBanner("nodes");
        while (select.options.length > 1) select.remove(1);
        data.nodes.forEach(function (n) {
            var opt = document.createElement("option");
            opt.value = n.node;
            opt.textContent = n.node + (n.up ? "" : " (down)") +
                (n.dss_datadirs && n.dss_datadirs.length ? " \u00b7 " + n.dss_datadirs.join(", ") : "");
            select.appendChild(opt);
        });
        select.value = state.node;
        if (select.value !== state.node) state.node = select.value = "";
        wrap.hidden = false;
    }

    function loadNodes() {
        return api("/api/nodes").then(renderNodes, failed("the node list", "nodes"));
    }

    function loadHistory() {
        var win = state.window, node = state.node;
        var query = "/api/history?window=" + encodeURIComponent(win) + (node ? "&node=" + encodeURIComponent(node) : "");
        return api(query).then(function (hist) {
            if (win !== state.window || node !== state.node) return;
            state.history = hist;
            clearBanner("history");
            renderHistory();
        }, failed("the history", "history"));
    }

    // ---------------------------------------------------------------- tables

    function compareRows(key, dir) {
        return function (a, b) {
            var x = a[key];
            var y = b[key];
            var xn = x === null || x === undefined || x === "";
            var yn = y === null || y === undefined || y === "";
            if (xn || yn) return xn === yn ? 0 : (xn ? 1 : -1); // unknown values last, whichever the direction
            if (typeof x === "number" && typeof y === "number") return dir * (x - y);
            return dir * String(x).localeCompare(String(y), undefined, { numeric: true, sensitivity: "base" });
        };
    }

    function tableHead(table, columns, sort, withAction, onSort) {
        var row = h("tr", {}, columns.map(function (col) {
            var sorted = sort.key === col.key;
            var th = h("th", {
                scope: "col",
                className: (col.type === "text" || col.type === "path" ? "" : "pt-num ") + "pt-sortable",
                "aria-sort": sorted ? (sort.dir > 0 ? "ascending" : "descending") : "none",
                dataset: { key: col.key }
            }, [h("button", {
                type: "button",
                className: "pt-sort",
                textContent: col.title + (sorted ? (sort.dir > 0 ? " \u25b2" : " \u25bc") : ""),
                onclick: function () { onSort(col); }
            })]);
            return th;
        }));
        if (withAction) row.appendChild(h("th", { scope: "col", textContent: "Action" }));
        table.appendChild(h("thead", {}, [row]));
    }

    function nextSort(sort, col) {
        if (sort.key === col.key) return { key: col.key, dir: -sort.dir };
        return { key: col.key, dir: col.type === "text" || col.type === "path" ? 1 : -1 };
    }

    function mainRows() {
        var t = state.table || {};
        var rows = (t.rows || []).slice();
        (t.activities_without_process || []).forEach(function (r) {
            rows.push(Object.assign({}, r, { _noProcess: true }));
        });
        return rows;
    }

    function matchesFilter(row, text, role, actionableOnly) {
        if (role && row.role !== role) return false;
        if (actionableOnly && !row.actionable) return false;
        if (!text) return true;
        var hay = [row.role_display, row.role, row.pid, row.label, row.project_key, row.activity_name,
            row.activity_kind, row.owner, row.user, row.state, row.activity_id, row.instance].concat(
            (row.processes || []).map(function (p) { return p.pid + " " + (p.label || ""); })).join(" ").toLowerCase();
        return text.split(/\s+/).every(function (word) { return hay.indexOf(word) >= 0; });
    }

    function roleCell(row, colours) {
        if (!row.role) {
            return h("td", { dataset: { key: "role", value: "" } }, [
                h("span", { className: "pt-muted", textContent: "no process here",
                    title: "DSS lists this activity but no process of it was found on this host" })
            ]);
        }
        return h("td", { dataset: { key: "role", value: row.role } }, [
            h("span", { className: "pt-dot", style: "background:" + safeColour(colours[row.role]) }),
            h("span", { textContent: row.role_display || row.role })
        ]);
    }

    /** The "Notebook / job / task" cell: the activity's kind, and its processes (or the process's label). */
    function fillNameCell(td, row) {
        if (row.activity_kind) {
            td.appendChild(h("span", { className: "pt-kind", textContent: KIND_LABELS[row.activity_kind] || row.activity_kind }));
        } else if (row.context_kind) {  // what DSS's own records (CRU, cgroup path) say the process is
            td.appendChild(h("span", { className: "pt-kind", textContent: CONTEXT_KINDS[row.context_kind] || row.context_kind }));
        }
        if (!row.activity_name && row.label) {
            td.insertBefore(h("span", { className: "pt-muted", textContent: row.label }), td.firstChild);
        } else if (row.processes && row.processes.length > 1) {
            td.appendChild(processList(row.processes));
        } else if (row.label) {
            // which process of the activity this row is: the kernel itself, a pod...
            td.appendChild(h("span", { className: "pt-sub", textContent: row.label, title: VIA[row.via] || "" }));
        }
    }

    /** An activity's processes (the JEK and its children, a kernel and its UIF wrappers), listed in its row. */
    function processList(processes) {
        var list = h("ul", { className: "pt-procs" }, processes.map(function (p) {
            return h("li", { dataset: { pid: String(p.pid), role: p.role || "", source: p.source || "" },
                title: VIA[p.via] || "" }, [
                (p.label || p.role_display || p.role || "process") + " " + p.pid + " \u00b7 " + formatBytes(p.rss_anon_bytes) +
                    (p.source && p.source !== "api" && SOURCES[p.source] ? " \u00b7 " + SOURCES[p.source] : "")
            ]);
        }));
        return h("details", { className: "pt-sub pt-procs-box" }, [
            h("summary", { textContent: processes.length + " processes" }), list
        ]);
    }

    function actionCell(row) {
        var td = h("td", { className: "pt-action" });
        var action = ACTIONS[row.activity_kind];
        if (!row.actionable || !action) return td;
        var who = state.whoami || {};
        var button = h("button", {
            type: "button",
            className: "pt-button pt-small",
            textContent: action.verb + "\u2026",
            dataset: { kind: row.activity_kind, id: row.activity_id || "", project: row.project_key || "" },
            onclick: function () { openAction(row); }
        });
        if (!who.can_act) {
            button.disabled = true;
            button.title = who.reason || "Only DSS administrators and the groups allowed in the webapp's settings can act.";
        }
        td.appendChild(button);
        return td;
    }

    /** The "Known from" cell: where the row's DSS facts come from, and its status when it needs saying. */
    function sourceCell(td, row) {
        td.textContent = SOURCES[row.source] || (row.source ? "via " + row.source : "\u2014");
        var title = [VIA[row.via], STATUSES[row.status]].filter(Boolean).join("; ");
        if (title) td.title = title;
        if (STATUS_BADGES[row.status]) {
            td.appendChild(h("span", { className: "pt-sub pt-status-" + row.status,
                textContent: STATUS_BADGES[row.status], title: STATUSES[row.status] }));
        }
    }

    function renderTable() {
        var table = clear($("pt-table"));
        var colours = roleColours();
        var all = mainRows();
        var text = $("pt-filter").value.trim().toLowerCase();
        var role = $("pt-role-filter").value;
        var actionableOnly = $("pt-actionable-only").checked;
        var rows = all.filter(function (r) { return matchesFilter(r, text, role, actionableOnly); });
        rows.sort(compareRows(state.sort.key, state.sort.dir));
        var columns = withWhere(withInstance(COLUMNS, all), all);
        tableHead(table, columns, state.sort, true, function (col) {
            state.sort = nextSort(state.sort, col);
            renderTable();
        });
        var body = h("tbody");
        rows.forEach(function (row) {
            var tr = h("tr", { dataset: { pid: row.pid === null || row.pid === undefined ? "" : String(row.pid),
                kind: row.activity_kind || "", id: row.activity_id || "" } });
            if (row._noProcess) tr.className = "pt-no-process";
            columns.forEach(function (col) {
                if (col.key === "role_display") {
                    tr.appendChild(roleCell(row, colours));
                    return;
                }
                var value = row[col.key];
                if (col.key === "owner" && !value) value = row.user;
                if (col.key === "state" && !value && row.status === "pool") value = "pre-started, idle";
                var td = h("td", { className: col.type === "text" ? "" : "pt-num", textContent: formatCell(col, value),
                    dataset: { key: col.key, value: value === null || value === undefined ? "" : String(value) } });
                if (col.key === "source") sourceCell(td, row);
                if (col.key === "instance") {
                    td.className = "pt-path";
                    td.title = value || "";
                }
                if (col.key === "pid" && row.pod) {  // a pod has no pid: its name instead
                    td.textContent = row.pod;
                    td.className = "pt-path";
                    td.title = "pod " + row.namespace + "/" + row.pod + " (" + (row.phase || "?") + "); memory: " +
                        (row.memory_source || "?");
                }
                if (col.key === "pid" && row._noProcess) {
                    td.textContent = "\u2014";
                    td.title = "DSS lists this activity but no process of it was found on this host";
                }
                if (col.key === "activity_name") fillNameCell(td, row);
                if (col.type === "bytes" && row.processes && row.processes.length > 1) {
                    td.title = "the sum of its " + row.processes.length + " processes";
                }
                tr.appendChild(td);
            });
            tr.appendChild(actionCell(row));
            body.appendChild(tr);
        });
        if (!rows.length) {
            body.appendChild(h("tr", {}, [h("td", { colSpan: columns.length + 1, className: "pt-empty",
                textContent: all.length ? "No row matches the filter." : "Nothing to show." })]));
        }
        table.appendChild(body);
        $("pt-table-count").textContent = rows.length === all.length ? all.length + " rows" : rows.length + " of " + all.length + " rows";
        $("pt-count-processes").textContent = String(all.length);
        renderRoleOptions(all);
    }

    function renderRoleOptions(rows) {
        var select = $("pt-role-filter");
        var current = select.value;
        var roles = {};
        rows.forEach(function (r) { if (r.role) roles[r.role] = r.role_display || r.role; });
        var keys = Object.keys(roles).sort(function (a, b) { return roles[a].localeCompare(roles[b]); });
        var existing = Array.prototype.map.call(select.options, function (o) { return o.value; }).slice(1);
        if (existing.join("|") === keys.join("|")) return;
        while (select.options.length > 1) select.remove(1);
        keys.forEach(function (k) { select.appendChild(h("option", { value: k, textContent: roles[k] })); });
        select.value = keys.indexOf(current) >= 0 ? current : "";
    }

    function renderOrphans() {
        var table = clear($("pt-orphans"));
        var colours = roleColours();
        var rows = ((state.table && state.table.orphans) || []).slice();
        rows.sort(compareRows(state.orphanSort.key, state.orphanSort.dir));
        var columns = withWhere(withInstance(ORPHAN_COLUMNS, rows), rows);
        if (rows.some(function (r) { return r.reason; })) columns = columns.concat([REASON_COLUMN]);
        tableHead(table, columns, state.orphanSort, false, function (col) {
            state.orphanSort = nextSort(state.orphanSort, col);
            renderOrphans();
        });
        var body = h("tbody");
        rows.forEach(function (row) {
            var tr = h("tr", { dataset: { pid: String(row.pid) } });
            columns.forEach(function (col) {
                if (col.key === "role_display") tr.appendChild(roleCell(row, colours));
                else tr.appendChild(h("td", { className: col.key === "instance" ? "pt-path" : (col.type === "text" ? "" : "pt-num"),
                    textContent: col.key === "pid" && row.pod ? row.pod : formatCell(col, row[col.key]),
                    title: col.key === "instance" ? (row.instance || "") : "",
                    dataset: { key: col.key, value: row[col.key] === null || row[col.key] === undefined ? "" : String(row[col.key]) } }));
            });
            body.appendChild(tr);
        });
        if (!rows.length) {
            body.appendChild(h("tr", {}, [h("td", { colSpan: columns.length, className: "pt-empty",
                textContent: "No orphan: every DSS process is explained by an activity DSS lists." })]));
        }
        table.appendChild(body);
        $("pt-count-orphans").textContent = String(rows.length);
    }

    /** The snapshot's summary of failed DSS calls, unless the table's banner already lists them one by one. */
    function renderApiError() {
        var listed = state.table && state.table.errors && state.table.errors.length;
        var error = state.snapshot && state.snapshot.api_error;
        if (error && !listed) setBanner("api", "warning", "DSS's API did not answer fully: " + error);
        else clearBanner("api");
    }

    function renderTableErrors() {
        var errors = (state.table && state.table.errors) || [];
        renderApiError();
        if (!errors.length) {
            clearBanner("listing");
            return;
        }
        setBanner("listing", "warning", "Some DSS calls failed; everything else is shown:", errors.map(function (e) {
            return (e.project_key ? e.project_key + ", " : "") + (KIND_LABELS[e.kind] || e.kind || "listing") + ": " + e.message;
        }));
    }

    /** DSS's pods on Kubernetes: an unreachable cluster, refusals and notes (e.g. no metrics API) as a banner. */
    function renderPodsBanner(pods) {
        var lines = pods ? (pods.errors || []).concat(pods.notes || []) : [];
        if (!pods || (pods.reachable && !lines.length)) {
            clearBanner("pods");
            return;
        }
        setBanner("pods", pods.reachable ? "info" : "warning", pods.reachable ?
            "Kubernetes: " + pods.count + " DSS pods listed; some could not be read fully:" :
            "Kubernetes: the cluster did not answer, DSS's pods are not shown:", lines);
    }

    function loadTable() {
        return api("/api/table").then(function (table) {
            state.table = table;
            clearBanner("table");
            renderListingAge(table.listing);
            retryWhileListing(table.listing);
            renderTable();
            renderOrphans();
            renderTableErrors();
            renderPodsBanner(table.pods);
        }, failed("the processes and activities", "table"));
    }

    // ---------------------------------------------------------------- actions

    function describe(row) {
        var dl = h("dl", { className: "pt-facts" });
        function add(term, value) {
            if (value === null || value === undefined || value === "") return;
            dl.appendChild(h("dt", { textContent: term }));
            dl.appendChild(h("dd", { textContent: String(value) }));
        }
        add("What", KIND_LABELS[row.activity_kind] || row.activity_kind);
        add("Name", row.activity_name);
        add("Project", row.project_key);
        add("User", row.owner);
        add("State", row.state ? formatState(row.state) : "");
        add("Age", formatDuration(row.age_seconds));
        add("Idle", formatDuration(row.idle_seconds));
        add("Memory (RssAnon)", formatBytes(row.rss_anon_bytes));
        add("PID", row.pid);
        add("DSS instance", row.instance);
        return dl;
    }

    function dialogMessage(level, text) {
        return h("p", { className: "pt-outcome pt-outcome-" + level, textContent: text });
    }

    /** The rules the macros spare an activity for (busy, someone has it open, just started), as warnings. */
    function warningList(warnings) {
        return h("ul", { className: "pt-warnings" }, warnings.map(function (w) {
            return h("li", { textContent: w });
        }));
    }

    function openAction(row) {
        var dialog = $("pt-dialog");
        var action = ACTIONS[row.activity_kind];
        var request = { kind: row.activity_kind, project_key: row.project_key, id: row.activity_id };
        var bodyEl = clear($("pt-dialog-body"));
        var confirm = $("pt-dialog-confirm");
        var cancel = $("pt-dialog-cancel");
        $("pt-dialog-title").textContent = action.verb + ": dry run";
        bodyEl.appendChild(describe(row));
        var status = h("div", { className: "pt-dialog-status" }, [dialogMessage("pending", "Asking the backend what it would do\u2026")]);
        bodyEl.appendChild(status);
        confirm.hidden = true;
        confirm.disabled = false;
        cancel.textContent = "Cancel";
        dialog.dataset.phase = "preview";
        delete dialog.dataset.outcome;
        state.dialogBusy = true;
        if (!dialog.open) dialog.showModal();

        api("/api/actions/preview", request).then(function (preview) {
            clear(status);
            var wouldAct = preview.outcome === "would_act";
            var warned = preview.outcome === "warned";
            status.appendChild(dialogMessage(wouldAct || warned ? "warning" : "info", OUTCOMES[preview.outcome] || preview.outcome));
            if (preview.warnings && preview.warnings.length) status.appendChild(warningList(preview.warnings));
            else if (preview.reason) status.appendChild(h("p", { className: "pt-reason", textContent: "Why: " + preview.reason }));
            dialog.dataset.phase = wouldAct ? "confirm" : (warned ? "warned" : "spared");
            var anyway = warned && (state.whoami || {}).admin === true;
            if (wouldAct || anyway) {
                confirm.textContent = anyway ? "Stop anyway" : "Confirm: " + action.verb.toLowerCase();
                confirm.hidden = false;
                confirm.onclick = function () {  // "Stop anyway" overrides only the warnings shown here
                    apply(anyway ? Object.assign({ anyway: preview.warning_kinds }, request) : request, status, action);
                };
            } else {
                if (warned) status.appendChild(h("p", { className: "pt-reason",
                    textContent: "Only a DSS administrator can stop it anyway." }));
                cancel.textContent = "Close";
            }
        }, function (error) {
            clear(status).appendChild(dialogMessage("error", "Refused: " + error.message));
            dialog.dataset.phase = "refused";
            cancel.textContent = "Close";
        });
    }

    function apply(request, status, action) {
        var dialog = $("pt-dialog");
        var confirm = $("pt-dialog-confirm");
        confirm.disabled = true;
        dialog.dataset.phase = "applying";
        $("pt-dialog-title").textContent = action.verb + ": asking DSS";
        status.appendChild(dialogMessage("pending", "Working\u2026"));
        api("/api/actions/apply", Object.assign({ confirm: true }, request)).then(function (result) {
            clear(status);
            var ok = ["aborted", "already_finished", "finished_before_abort"].indexOf(result.outcome) >= 0;
            status.appendChild(dialogMessage(ok ? "ok" : (result.outcome === "failed" ? "error" : "warning"),
                OUTCOMES[result.outcome] || result.outcome));
            if (result.message) status.appendChild(h("p", { className: "pt-reason", textContent: result.message }));
            if (result.outcome === "warned" && result.warnings) status.appendChild(warningList(result.warnings));
            else if (result.reason) status.appendChild(h("p", { className: "pt-reason", textContent: "Why: " + result.reason }));
            dialog.dataset.phase = "done";
            dialog.dataset.outcome = result.outcome;
            $("pt-dialog-title").textContent = action.verb + ": outcome";
        }, function (error) {
            clear(status).appendChild(dialogMessage("error", "Refused: " + error.message));
            dialog.dataset.phase = "refused";
            $("pt-dialog-title").textContent = action.verb + ": refused";
        }).then(function () {
            confirm.hidden = true;
            $("pt-dialog-cancel").textContent = "Close";
            return loadTable();
        });
    }

    function closeDialog() {
        var dialog = $("pt-dialog");
        if (dialog.open) dialog.close();
    }

    // ---------------------------------------------------------------- wiring

    function refresh() {
        if (state.busy) return Promise.resolve();
        state.busy = true;
        $("pt-refresh").disabled = true;
        return Promise.all([loadWhoami(), loadSnapshot(), loadNodes(), loadHistory(), loadTable()]).then(function () {
            state.busy = false;
            $("pt-refresh").disabled = false;
            document.body.dataset.loaded = "true";
        });
    }

    function schedule() {
        if (state.timer) clearInterval(state.timer);
        state.timer = null;
        if (!$("pt-auto").checked) return;
        state.timer = setInterval(function () {
            if (state.dialogBusy || document.hidden) return;
            refresh();
        }, REFRESH_MS);
    }

    function showTab(name) {
        state.tab = name;
        document.querySelectorAll(".pt-tab").forEach(function (tab) {
            tab.setAttribute("aria-selected", tab.dataset.tab === name ? "true" : "false");
        });
        document.querySelectorAll(".pt-panel").forEach(function (panel) {
            panel.hidden = panel.id !== "pt-panel-" + name;
        });
        drawVisibleFigures();
    }

    function init() {
        document.querySelectorAll(".pt-tab").forEach(function (tab) {
            tab.addEventListener("click", function () { showTab(tab.dataset.tab); });
        });
        document.querySelectorAll(".pt-window [data-window]").forEach(function (b) {
            b.addEventListener("click", function () {
                state.window = b.dataset.window;
                loadHistory();
            });
        });
        $("pt-node").addEventListener("change", function () {
            state.node = $("pt-node").value;
            loadHistory();
        });
        $("pt-refresh").addEventListener("click", refresh);
        $("pt-auto").addEventListener("change", schedule);
        $("pt-filter").addEventListener("input", renderTable);
        $("pt-role-filter").addEventListener("change", renderTable);
        $("pt-actionable-only").addEventListener("change", renderTable);
        $("pt-dialog-cancel").addEventListener("click", closeDialog);
        $("pt-dialog").addEventListener("close", function () { state.dialogBusy = false; });
        loadPlotly();
        refresh();
        schedule();
    }

    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
    else init();
})();
