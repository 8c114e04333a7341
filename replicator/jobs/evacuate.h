/* Evacuating an SR: job kind "sr-evacuate" (jobs.h), and its plan.
 *
 * Design
 * - An evacuation empties a source SR into one or more destination SRs
 *   of this host (XenAPI: SR.evacuate_plan, SR.evacuate,
 *   Async.SR.evacuate; vdimotiond(8)).  Its unit is the chain: a tree of
 *   VDIs of the source SR, a base (a VDI without a parent), every VDI
 *   over it (snapshots, clones' leaves, the leaf), an unmanaged clone
 *   base included.  A chain moves whole into one destination and keeps
 *   its shape: each layer becomes a new VDI there whose parent is the
 *   copy of its parent, copied alone (the copy engine's layer copy:
 *   copy_endpoint_local with layer_only, holes falling through to the
 *   parent), with its name label, description, other_config and
 *   snapshot record (is_snapshot, snapshot_of naming the NEW VDI,
 *   snapshot_time) kept.
 * - The plan (evacuate_plan) is pure: it reads the SRs and the VBDs and
 *   decides, for each chain, live (a running VM's VBD uses one of its
 *   VDIs) or offline, the bytes to move (the physical utilisation of
 *   every layer), and a destination: the one with the most free space
 *   left (sr_stat, destinations on one filesystem sharing theirs) that
 *   holds the chain with its margin (EVACUATE_MARGIN).  A chain that
 *   fits nowhere is refused with the reason; the run starts only if
 *   nothing is refused, or with options["partial"] = "true".  Chains go
 *   in order (options["order"]: "size", largest first, the default; or
 *   "name", by the name label of their leaf).
 * - The run (the kind's run, in a job-manager thread) moves up to
 *   "parallel" chains at once on a thread pool of its own, the others
 *   queued.  Per chain: every new uuid is chosen and recorded (the
 *   state file, below) before any VDI is created; each new VDI carries
 *   other_config["vdimotion-task"] = the task's uuid until the chain is
 *   committed, so that a VDI with the mark and no running job is a
 *   leftover to remove (as vdi-jobs.c does).  Layers go bottom first,
 *   each with its own journal (<jobs_dir>/<task>.<new uuid>.journal),
 *   so that an interrupted layer resumes where it stopped.  A live leaf
 *   is not copied: a new leaf is created over the copied parents and
 *   the VM's disk is moved onto it through its mirror filter, which
 *   syncs only the leaf's own blocks (vdi_live_move, vdi-jobs.h: the
 *   filter's sync=top), then pivoted; the VM never stops.
 *   Then the chain commits (its point of no return, recorded first):
 *   VBDs of halted VMs follow their VDIs, the marks go, the source
 *   layers are destroyed top down.
 * - State per VDI: "queued", "moving", "moved", "failed", "skipped"
 *   (excluded, refused, or not started because of a cancel).  The whole
 *   of it lives in <jobs_dir>/<task>.evacuate.json, rewritten atomically
 *   (g_file_set_contents) at every change of state, so that a restart
 *   resumes: moved chains stay moved, a chain that was committing is
 *   finished, an interrupted offline chain resumes from its journals, an
 *   interrupted live move (before its pivot) is aborted and its new
 *   leaf removed, then moved again.  The report so far is readable
 *   while it runs as the task's other_config["evacuate-report"]
 *   (job_set_other_config).  Progress is bytes moved over the bytes of
 *   the whole plan.
 * - Cancel: no new chain starts; a chain in flight before its commit is
 *   undone (its new VDIs destroyed, the source untouched), after it
 *   finished.  Every VDI is then whole in exactly one place; the task
 *   ends cancelled (TASK_CANCELLED) and its result is the report, which
 *   says what moved.
 * - The end: the task's result is the report (job_succeed_text); if a
 *   chain failed the task fails with that chain's error (VDI_COPY_FAILED
 *   or MIRROR_FAILED, the message, the VDI's ref) and the report is its
 *   result all the same.  Every finished copy's rate (bytes / seconds)
 *   goes into the host's settings ("evacuate-copy-rate", a running
 *   average) for the next plan's estimate.
 *
 * Options (a map of strings; any other key is refused):
 *   parallel         chains at once, 1 to 64 (default: the job
 *                    manager's max-storage-operations)
 *   order            "size" (default) or "name"
 *   exclude          comma-separated uuids of VDIs of the SR: their
 *                    chains stay (skipped)
 *   dest-img-format  "vhd", "qcow2" or "raw" for every new layer
 *                    (default: each layer's own format); raw cannot have
 *                    a parent, so a chain of more than one layer is
 *                    refused with raw
 *   partial          "true": move what fits, skip what is refused
 *                    ("false", the default: refuse the whole evacuation)
 *
 * The plan, a JSON object (every size in bytes, every uuid canonical):
 *   sr                the source SR's uuid
 *   dest_srs          [uuid], as given
 *   parallel, order, partial, dest_img_format (null: each layer's own)
 *   fits              true if no chain is refused
 *   chains            [chain], in the order they will move:
 *     index           its place in that order, from 0
 *     live            true if a running VM uses one of its VDIs
 *     bytes           sum of its layers' physical_utilisation
 *     need            bytes with the margin: what a destination must have
 *     virtual_size    the largest virtual size of its VDIs
 *     dest_sr         the destination's uuid, or null if refused
 *     refused         null, or why it fits nowhere (text)
 *     vdis            [vdi], bottom first (a parent before its children):
 *       uuid, name_label, format, dest_format, virtual_size, bytes,
 *       parent (uuid or null), is_snapshot, snapshot_of (uuid or null),
 *       managed (false for an unmanaged clone base), vbd (the uuid of
 *       the running VM's VBD using it, or null)
 *   excluded          [{uuid, name_label, reason}]: every VDI left where
 *                     it is because of options["exclude"]
 *   destinations      [{sr, name_label, free_bytes, planned_bytes}]
 *   totals            {vdis, chains, bytes, refused_chains,
 *                      refused_bytes, excluded_vdis}
 *   rate              {bytes_per_second, source}: the copy rate the
 *                     estimate uses and where it came from ("measured on
 *                     this host: N copies", or "default: no copy measured
 *                     on this host yet")
 *   estimated_seconds bytes to move / rate / min(parallel, chains)
 *
 * The report, a JSON object (the task's result, the synchronous call's
 * value, and other_config["evacuate-report"] while it runs):
 *   task, sr, dest_srs
 *   state             "running", "done", "failed" or "cancelled"
 *   progress          0 to 1, bytes moved over bytes planned
 *   vdis              [vdi] in the plan's order:
 *     from            {sr, uuid}
 *     to              {sr, uuid} (uuid null until chosen)
 *     name_label, chain (the chain's index), live
 *     state           "queued", "moving", "moved", "failed", "skipped"
 *     bytes           its layer's bytes moved (so far)
 *     seconds         how long its copy (or mirror) took
 *     error           null, or why it failed or was skipped
 *   totals            {vdis, moved, failed, skipped, queued, moving,
 *                      bytes, seconds, bytes_per_second}
 *
 * Errors (host_err_set): HANDLE_INVALID SR <ref> (an unknown SR among
 * dest_srs), INVALID_VALUE <option> <value> <why> (a bad option: an
 * unknown key, parallel not a number from 1 to 64, an unknown order or
 * format, an exclude uuid that is no VDI of the SR, the source among the
 * destinations, no destination), SR_FULL <sr ref> <why> (the plan does
 * not fit and partial is not "true"), OTHER_OPERATION_IN_PROGRESS VDI
 * <ref> <op> (a VDI to move is busy), INTERNAL_ERROR <message>.
 */
#ifndef VDM_EVACUATE_H
#define VDM_EVACUATE_H

#include <stdbool.h>

#include <glib.h>

#include "host.h"

/* The space a chain of BYTES over N_LAYERS layers needs in a
 * destination: its bytes, an eighth more (a layer in another format
 * grows by its metadata; a live leaf grows while it is mirrored), and
 * 4 MiB per layer. */
#define EVACUATE_MARGIN(bytes, n_layers) \
  ((bytes) + (bytes) / 8 + (uint64_t)(n_layers) * (4u << 20))

/* The copy rate assumed when none was measured on this host. */
#define EVACUATE_DEFAULT_RATE (100.0 * 1024 * 1024)

/* The plan to evacuate SR SRC into the SRs DEST_SRS (N_DEST uuids)
 * with OPTIONS (string → string; NULL: none), as a JSON text (g_free),
 * or NULL with *ERR (see above: a bad option or SR; a plan that does
 * not fit is still a plan, with "fits": false).  Any thread. */
char *evacuate_plan (struct host *h, const char *src, const char *const *dest,
                     size_t n_dest, GHashTable *options, char ***err);

/* Start evacuating SR SRC into DEST_SRS with OPTIONS: the plan is made
 * and checked (refused as a whole with SR_FULL if a chain is refused and
 * options["partial"] is not "true"), then a job of kind "sr-evacuate" is
 * queued.  Its task's uuid (g_free), or NULL with *ERR. */
char *evacuate_submit (struct host *h, const char *src,
                       const char *const *dest, size_t n_dest,
                       GHashTable *options, char ***err);

#endif /* VDM_EVACUATE_H */
