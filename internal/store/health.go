package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/health"
	"github.com/ringmaster/ringmaster/internal/risk"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/telemetry"
)

// Tally says what RecordEvents did with a batch.
type Tally struct {
	Counted      int // new device outcomes counted
	Repeats      int // events of an outcome already counted (a device reporting again, a redelivered batch)
	Duplicates   int // events repeating an earlier one's id in the same batch
	Unattributed int // events of no known deployment
}

// Cohort configures cohort cells: the attributes counted singly and in
// pairs, and how many values each may have before the rest count as
// "other".
type Cohort struct {
	Attributes []string
	MaxValues  int
}

// RecordEvents counts a batch of events exactly once, in one transaction:
// an event's device counts once per deployment and outcome (the
// device_outcomes key, which makes a redelivered batch or a resent event
// count nothing), in the wave its verified offer receipt names
// (Event.Wave) and in every cohort cell of its attributes. Events without
// a verified offer (Event.OfferedAt unset) count nothing. If anything
// fails nothing is counted, so the batch can be redelivered safely. Rows
// are written many per statement.
func (s *Store) RecordEvents(ctx context.Context, events []telemetry.Event, cohort Cohort) (t Tally, err error) {
	// What the batch numbered and counted is remembered once it commits.
	learned := func() {}
	defer func() {
		if err == nil {
			learned()
		}
	}()
	err = s.InTx(ctx, func(tx *Tx) error {
		t = Tally{}
		// 1. Each event id once (a resent event or a redelivered batch
		// repeats outcomes already counted, which step 2 skips).
		seen := make(map[string]bool, len(events))

		// 2. Device outcomes never counted before.
		deps := map[string]*rollout.Deployment{}
		type outcome struct {
			key  outcomeKey // its device_outcomes key
			e    *telemetry.Event
			dep  *rollout.Deployment
			wave int
			risk float64 // predicted risk, in risk-ordered deployments
		}
		models := map[string]*risk.Model{}
		// The batch's outcomes in event order (cohort values are admitted
		// first come, first served), each once.
		pending := make([]outcome, 0, len(events))
		type named struct {
			dep, device string
			outcome     telemetry.Type
		}
		isPending := make(map[named]bool, len(events))
		depIDs, deviceIDs := map[string]bool{}, map[string]bool{}
		for i := range events {
			e := &events[i]
			if seen[e.ID] {
				t.Duplicates++
				continue
			}
			seen[e.ID] = true
			d, err := tx.eventDeployment(ctx, e, deps)
			if err != nil {
				return err
			}
			if d == nil || e.OfferedAt.IsZero() {
				// No deployment, or no verified offer (the device API only
				// publishes events citing a valid offer receipt).
				t.Unattributed++
				continue
			}
			k := named{d.ID, e.DeviceID, e.Type}
			if isPending[k] {
				t.Repeats++
				continue
			}
			m, err := tx.deploymentRisk(ctx, d, models)
			if err != nil {
				return err
			}
			// The wave the server offered it in, as its signed receipt says.
			o := outcome{e: e, dep: d, wave: e.Wave}
			if m != nil {
				o.risk = m.Score(e.Attributes)
			}
			isPending[k] = true
			depIDs[d.ID], deviceIDs[e.DeviceID] = true, true
			pending = append(pending, o)
		}
		depNumbers, depFresh, err := tx.numbers(ctx, "deployment_numbers", "deployment_id", slices.Sorted(maps.Keys(depIDs)), s.committed.deployments)
		if err != nil {
			return err
		}
		deviceNumbers, deviceFresh, err := tx.numbers(ctx, "device_numbers", "device_id", slices.Sorted(maps.Keys(deviceIDs)), s.committed.devices)
		if err != nil {
			return err
		}
		// Outcomes remembered as counted are repeats; the others go to the
		// database, which counts those it has not.
		sorted := make([]*outcome, 0, len(pending))
		for i := range pending {
			o := &pending[i]
			o.key = outcomeKey{depNumbers[o.dep.ID], deviceNumbers[o.e.DeviceID], outcomeCodes[o.e.Type]}
			if !s.committed.outcomes.Contains(o.key) {
				sorted = append(sorted, o)
			}
		}
		learned = func() {
			remember(s.committed.deployments, depFresh)
			remember(s.committed.devices, deviceFresh)
			// Each is in device_outcomes now, counted by this batch or before.
			for _, o := range sorted {
				s.committed.outcomes.Add(o.key, struct{}{})
			}
		}
		// Rows go in key order, as every aggregator writes them: concurrent
		// batches that share outcomes (aggregators on PostgreSQL, each
		// replica's and each worker's) then wait for one another rather
		// than deadlock.
		slices.SortFunc(sorted, func(a, b *outcome) int { return a.key.compare(b.key) })
		rows := make([]any, 0, 5*len(sorted))
		for _, o := range sorted {
			rows = append(rows, o.key.deployment, o.key.device, o.key.outcome, o.wave, o.e.Time.UTC())
		}
		counted := make(map[outcomeKey]bool, len(sorted))
		if err := tx.writeRows(ctx, "INSERT INTO device_outcomes (deployment, device, outcome, wave, at)", 5, rows,
			" ON CONFLICT DO NOTHING RETURNING deployment, device, outcome", func(rows *sql.Rows) error {
				var k outcomeKey
				err := rows.Scan(&k.deployment, &k.device, &k.outcome)
				counted[k] = true
				return err
			}); err != nil {
			return err
		}
		// The offer's record, re-derived from the receipt with the first
		// outcome counted of it: a record lost in a crash before its
		// check-in's batch was written comes back then. (An outcome counted
		// before had its offer recorded then.)
		offerOf := map[string]outcome{}
		for _, o := range pending {
			od := o.dep.ID + "|" + o.e.DeviceID
			if _, ok := offerOf[od]; counted[o.key] && !ok {
				offerOf[od] = o
			}
		}
		offers := make([]any, 0, 4*len(offerOf))
		for _, od := range slices.Sorted(maps.Keys(offerOf)) {
			o := offerOf[od]
			offers = append(offers, o.dep.ID, o.e.DeviceID, o.e.Wave, o.e.OfferedAt.UTC())
		}
		if err := tx.insertNew(ctx, "offers (deployment_id, device_id, wave, offered_at)", 4, offers); err != nil {
			return err
		}

		// A crash here leaves part of the batch written and nothing
		// committed: the batch is redelivered and counted whole.
		if err := s.failpoints.Reach(ctx, "aggregate-uncommitted"); err != nil {
			return err
		}

		// 3. Counters for what was counted.
		type key struct {
			dep     string
			wave    int
			outcome telemetry.Type
			cell    string
		}
		counts := map[key]int64{}
		type hourKey struct {
			dep  string
			hour int64
		}
		hours := map[hourKey]health.Installs{}
		admitted := map[string]map[string]bool{}
		for _, o := range pending {
			if !counted[o.key] {
				t.Repeats++
				continue
			}
			t.Counted++
			cells := telemetry.Cells(o.e.Attributes, cohort.Attributes, func(attr, value string) string {
				return tx.admit(ctx, admitted, attr, value, cohort.MaxValues, &err)
			})
			if err != nil {
				return err
			}
			for _, c := range cells {
				counts[key{o.dep.ID, o.wave, o.e.Type, c}]++
			}
			switch o.e.Type {
			case telemetry.InstallSucceeded, telemetry.InstallFailed, telemetry.DownloadFailed:
				if o.risk > 0 {
					counts[key{o.dep.ID, o.wave, health.PredictedRisk, ""}] += int64(math.Round(o.risk * 1e6))
				}
				h := hourKey{o.dep.ID, health.HourOf(o.e.Time)}
				in := hours[h]
				in.Of++
				if o.e.Type != telemetry.InstallSucceeded {
					in.Failed++
				}
				hours[h] = in
			}
		}
		// Installs by the hour they happened in: the ambient reference's
		// rollup (HourlyInstalls), in the same fixed order as the counters.
		hourKeys := slices.SortedFunc(maps.Keys(hours), func(a, b hourKey) int {
			return cmp.Or(strings.Compare(a.dep, b.dep), cmp.Compare(a.hour, b.hour))
		})
		args := make([]any, 0, len(hourKeys)*4)
		for _, k := range hourKeys {
			args = append(args, k.dep, k.hour, hours[k].Failed, hours[k].Of)
		}
		if err := tx.writeRows(ctx, `INSERT INTO install_hours (deployment_id, hour, failed, installs)`, 4, args,
			` ON CONFLICT (deployment_id, hour) DO UPDATE SET failed = install_hours.failed + excluded.failed, installs = install_hours.installs + excluded.installs`, nil); err != nil {
			return err
		}
		keys := make([]key, 0, len(counts))
		for k := range counts {
			keys = append(keys, k)
		}
		// A fixed order keeps concurrent aggregators from deadlocking on
		// PostgreSQL (any total order does, if every replica uses the same).
		slices.SortFunc(keys, func(a, b key) int {
			return cmp.Or(strings.Compare(a.dep, b.dep), cmp.Compare(a.wave, b.wave),
				strings.Compare(string(a.outcome), string(b.outcome)), strings.Compare(a.cell, b.cell))
		})
		args = make([]any, 0, len(keys)*5)
		for _, k := range keys {
			args = append(args, k.dep, k.wave, k.outcome, k.cell, counts[k])
		}
		return tx.writeRows(ctx, `INSERT INTO health_counts (deployment_id, wave, outcome, cell, devices)`, 5, args,
			` ON CONFLICT (deployment_id, wave, outcome, cell) DO UPDATE SET devices = health_counts.devices + excluded.devices`, nil)
	})
	return t, err
}

// insertNew inserts rows of width columns into table (many per
// statement), skipping those whose key is there already.
func (q *queries) insertNew(ctx context.Context, table string, width int, args []any) error {
	return q.writeRows(ctx, `INSERT INTO `+table, width, args, ` ON CONFLICT DO NOTHING`, nil)
}

// outcomeKey is a device_outcomes row's key.
type outcomeKey struct {
	deployment, device int64
	outcome            int
}

func (k outcomeKey) compare(o outcomeKey) int {
	return cmp.Or(cmp.Compare(k.deployment, o.deployment), cmp.Compare(k.device, o.device), cmp.Compare(k.outcome, o.outcome))
}

// rowsPerStatement is how many rows writeRows puts in one statement.
const rowsPerStatement = 200

// writeRows runs "head VALUES (...), (...) tail" over args, rows of width
// values, rowsPerStatement rows at a time. The full-size statement is
// prepared once and reused (SQLite parses it once rather than per chunk).
// With scan, the statement returns rows and scan reads each (statements
// without RETURNING run the same way and return none). On PostgreSQL the
// rows go as one array per column, in one statement (arrays).
func (q *queries) writeRows(ctx context.Context, head string, width int, args []any, tail string, scan func(*sql.Rows) error) error {
	if query, cols, ok := q.arrays(head, width, args, tail); ok {
		return q.scanRows(ctx, scan, query, cols...)
	}
	statement := func(n int) string {
		var sb strings.Builder
		sb.WriteString(head + ` VALUES `)
		for i := range n {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteByte('(')
			q.placeholders(&sb, i*width, width)
			sb.WriteByte(')')
		}
		sb.WriteString(tail)
		return sb.String()
	}
	var full *sql.Stmt
	if len(args) >= 2*rowsPerStatement*width {
		var err error
		if full, err = q.db.PrepareContext(ctx, statement(rowsPerStatement)); err != nil {
			return unavailable(err)
		}
		defer full.Close()
	}
	for len(args) > 0 {
		n := min(len(args)/width, rowsPerStatement)
		chunk := args[:n*width]
		args = args[n*width:]
		var rows *sql.Rows
		var err error
		if full != nil && n == rowsPerStatement {
			rows, err = full.QueryContext(ctx, chunk...)
		} else {
			rows, err = q.db.QueryContext(ctx, statement(n), chunk...)
		}
		if err := readRows(rows, err, scan); err != nil {
			return err
		}
	}
	return nil
}

// arrays makes, on PostgreSQL, "head SELECT * FROM unnest($1::T[], ...)
// tail" with a column of args a parameter: whatever the batch's size, one
// statement, planned once, its values sent in binary. A column's type is
// its first value's: strings are text, integers bigint, times timestamp;
// with any other, or on SQLite, ok is false.
func (q *queries) arrays(head string, width int, args []any, tail string) (query string, cols []any, ok bool) {
	if q.dialect != Postgres || len(args) == 0 {
		return "", nil, false
	}
	n := len(args) / width
	cols = make([]any, width)
	var sb strings.Builder
	sb.WriteString(head + ` SELECT * FROM unnest(`)
	for c := range width {
		if c > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("$" + strconv.Itoa(c+1))
		switch v := reflect.ValueOf(args[c]); {
		case v.Kind() == reflect.String:
			col := make([]string, n)
			for r := range n {
				col[r] = reflect.ValueOf(args[r*width+c]).String()
			}
			cols[c] = col
			sb.WriteString("::text[]")
		case v.CanInt():
			col := make([]int64, n)
			for r := range n {
				col[r] = reflect.ValueOf(args[r*width+c]).Int()
			}
			cols[c] = col
			sb.WriteString("::bigint[]")
		case v.Type() == reflect.TypeFor[time.Time]():
			col := make([]time.Time, n)
			for r := range n {
				col[r] = args[r*width+c].(time.Time)
			}
			cols[c] = col
			sb.WriteString("::timestamp[]")
		default:
			return "", nil, false
		}
	}
	sb.WriteString(`)` + tail)
	return sb.String(), cols, true
}

// scanRows runs query and hands each row it returns to scan (if any).
func (q *queries) scanRows(ctx context.Context, scan func(*sql.Rows) error, query string, args ...any) error {
	rows, err := q.db.QueryContext(ctx, query, args...)
	return readRows(rows, err, scan)
}

// readRows hands each of a query's rows to scan (if any) and closes them;
// err is the query's.
func readRows(rows *sql.Rows, err error, scan func(*sql.Rows) error) error {
	if err != nil {
		return unavailable(err)
	}
	defer rows.Close()
	for scan != nil && rows.Next() {
		if err := scan(rows); err != nil {
			return unavailable(err)
		}
	}
	return unavailable(rows.Err())
}

// deploymentRisk returns the pinned risk model of a risk-ordered
// deployment (nil for others), cached in models.
func (q *queries) deploymentRisk(ctx context.Context, d *rollout.Deployment, models map[string]*risk.Model) (*risk.Model, error) {
	id := d.Plan.RiskModel
	if d.Plan.Order != rollout.OrderRisk || id == "" {
		return nil, nil
	}
	if m, ok := models[id]; ok {
		return m, nil
	}
	m, err := q.RiskModelByID(ctx, id)
	if err != nil {
		return nil, err
	}
	models[id] = m.Model
	return m.Model, nil
}

// eventDeployment finds the deployment an event belongs to: the one it
// names (if it is of the event's update), else the update's live one.
func (q *queries) eventDeployment(ctx context.Context, e *telemetry.Event, cache map[string]*rollout.Deployment) (*rollout.Deployment, error) {
	k := e.DeploymentID
	if k == "" {
		k = "upd:" + e.UpdateID
	}
	if d, ok := cache[k]; ok {
		return d, nil
	}
	var d rollout.Deployment
	var err error
	if e.DeploymentID != "" {
		d, err = q.Deployment(ctx, e.DeploymentID)
		if err == nil && d.UpdateID != e.UpdateID {
			err = fault.E(fault.NotFound, "deployment is of another update")
		}
	} else {
		d, err = q.liveDeployment(ctx, e.UpdateID)
	}
	if fault.Is(err, fault.NotFound) {
		cache[k] = nil
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cache[k] = &d
	return &d, nil
}

// admit returns value if the attribute may count it, else "other". It
// records a newly admitted value; errors go to *errp.
func (q *queries) admit(ctx context.Context, cache map[string]map[string]bool, attr, value string, max int, errp *error) string {
	vals, ok := cache[attr]
	if !ok {
		vals = map[string]bool{}
		rows, err := q.db.QueryContext(ctx, `SELECT value FROM cohort_values WHERE attribute = $1`, attr)
		if err != nil {
			*errp = unavailable(err)
			return value
		}
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err == nil {
				vals[v] = true
			}
		}
		rows.Close()
		cache[attr] = vals
	}
	if vals[value] {
		return value
	}
	if max > 0 && len(vals) >= max {
		return "other"
	}
	if _, err := q.db.ExecContext(ctx, `INSERT INTO cohort_values (attribute, value) VALUES ($1, $2) ON CONFLICT DO NOTHING`, attr, value); err != nil {
		*errp = unavailable(err)
	}
	vals[value] = true
	return value
}

// HealthCount is the number of devices of a deployment that reported an
// outcome, in a wave and cohort cell.
type HealthCount struct {
	Wave    int            `json:"wave"`
	Outcome telemetry.Type `json:"outcome"`
	Cell    string         `json:"cell"`
	Devices int64          `json:"devices"`
}

// HealthCounts returns a deployment's counts: every cell, or only the
// overall cell "" when overallOnly.
func (q *queries) HealthCounts(ctx context.Context, deploymentID string, overallOnly bool) ([]HealthCount, error) {
	query := `SELECT wave, outcome, cell, devices FROM health_counts WHERE deployment_id = $1`
	if overallOnly {
		query += ` AND cell = ''`
	}
	rows, err := q.db.QueryContext(ctx, query+` ORDER BY wave, outcome, cell`, deploymentID)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	out := []HealthCount{}
	for rows.Next() {
		var c HealthCount
		if err := rows.Scan(&c.Wave, &c.Outcome, &c.Cell, &c.Devices); err != nil {
			return nil, unavailable(err)
		}
		out = append(out, c)
	}
	return out, unavailable(rows.Err())
}

// OutcomeDevices sums a deployment's overall counts by outcome: for one
// wave, or all waves when wave < 0.
func (q *queries) OutcomeDevices(ctx context.Context, deploymentID string, wave int) (map[string]int64, error) {
	counts, err := q.HealthCounts(ctx, deploymentID, true)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, c := range counts {
		if wave < 0 || c.Wave == wave {
			out[string(c.Outcome)] += c.Devices
		}
	}
	return out, nil
}

// PreviousRelease returns the newest other deployment of the product with
// at least minReports devices that finished installing, and its overall
// outcome counts; NotFound if there is none.
func (q *queries) PreviousRelease(ctx context.Context, product, excludeID string, minReports int64) (rollout.Deployment, map[string]int64, error) {
	deps, err := q.Deployments(ctx, DeploymentFilter{Product: product, Limit: 20})
	if err != nil {
		return rollout.Deployment{}, nil, err
	}
	for _, d := range deps {
		if d.ID == excludeID {
			continue
		}
		devs, err := q.OutcomeDevices(ctx, d.ID, -1)
		if err != nil {
			return d, nil, err
		}
		if devs["install_succeeded"]+devs["install_failed"]+devs["download_failed"] >= minReports {
			return d, devs, nil
		}
	}
	return rollout.Deployment{}, nil, fault.E(fault.NotFound, "no previous release of %s with %d reports", product, minReports)
}

// installOutcomes are the outcomes an install failure rate is made of, by
// name (installCodes has their codes).
const installOutcomes = `('install_succeeded', 'install_failed', 'download_failed')`

// maxAmbientCellRows bounds the installs HourlyInstalls reads for a cell.
const maxAmbientCellRows = 500_000

// HourlyInstalls counts devices' install outcomes by the hour they
// happened in, over the hours from from's to to's: the installs of
// deployment id, or with others those of every other deployment (the
// fleet's other installs: the health gate's ambient reference, matched
// hour by hour with the release's). Without a cell it reads the hourly
// rollup the aggregator keeps (install_hours), a row per deployment and
// hour however large the fleet. With cell (a cohort cell, parsed), only
// devices whose registry attributes match every attribute of it count; the
// gate asks for the one cell a regression localized to.
func (q *queries) HourlyInstalls(ctx context.Context, id string, others bool, cell map[string]string, from, to time.Time) (health.Hourly, error) {
	which := "="
	if others {
		which = "<>"
	}
	first, last := health.HourOf(from), health.HourOf(to)
	out := health.Hourly{}
	if cell == nil {
		rows, err := q.db.QueryContext(ctx, `SELECT hour, SUM(failed), SUM(installs) FROM install_hours
			WHERE hour >= $1 AND hour <= $2 AND deployment_id `+which+` $3 GROUP BY hour`, first, last, id)
		if err != nil {
			return nil, unavailable(err)
		}
		defer rows.Close()
		for rows.Next() {
			var h int64
			var in health.Installs
			if err := rows.Scan(&h, &in.Failed, &in.Of); err != nil {
				return nil, unavailable(err)
			}
			out[h] = in
		}
		return out, unavailable(rows.Err())
	}
	from, to = time.Unix(first*3600, 0), time.Unix((last+1)*3600, 0)
	rows, err := q.db.QueryContext(ctx, `SELECT o.at, o.outcome, dv.attributes FROM device_outcomes o
		JOIN deployment_numbers dn ON dn.number = o.deployment
		JOIN device_numbers vn ON vn.number = o.device
		JOIN devices dv ON dv.id = vn.device_id
		WHERE o.at >= $1 AND o.at < $2 AND dn.deployment_id `+which+` $3 AND o.outcome IN `+installCodes+`
		LIMIT $4`, from.UTC(), to.UTC(), id, maxAmbientCellRows)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	for rows.Next() {
		var at time.Time
		var outcome int
		var attrs string
		if err := rows.Scan(&at, &outcome, &attrs); err != nil {
			return nil, unavailable(err)
		}
		var a map[string]string
		if json.Unmarshal([]byte(attrs), &a) != nil {
			continue
		}
		match := true
		for k, v := range cell {
			match = match && a[k] == v
		}
		if match {
			out.Count(health.HourOf(at), string(outcomeOf(outcome)), 1)
		}
	}
	return out, unavailable(rows.Err())
}
