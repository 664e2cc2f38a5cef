#!perl
# One checker per instance (issue 8): the checks run in one supervised
# process that every process of the instance shares through the state
# file; RT's processes start no thread and hold no connection; the checker
# holds nothing of theirs, follows its master, is replaced when it dies,
# retires for a newer configuration; the log gets each turn once.
use strict;
use warnings;

use lib 't/lib';
use File::Temp qw(tempdir);
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use HETest::Ps qw(:all);
use HEBuild qw(need_backend);
use HETest::Servers qw(start_fake_peer make_sqlite);
use RT::Extension::HealthEndpoint;

plan skip_all => 'needs Linux /proc' unless -r '/proc/self/status';

my %built = map { $_ => 1 } RT::Extension::HealthEndpoint::backends();
my $dir = tempdir(CLEANUP => 1);
chmod 0755, $dir;
my $OK = '{"checks":{"database":"ok","redis":"skipped"},"status":"ok"}';
my $FAIL = '{"checks":{"database":"fail","redis":"skipped"},"status":"fail"}';

# A real database for "ok": an SQLite file (or, without that backend, the
# DBI callback path, which every build has).
# (The two Oracle configurations differ in name: the callback is not part
# of what makes a configuration newer.)
my $good = "$dir/good.db";
make_sqlite($good) if $built{SQLite};
sub db_ok { $built{SQLite} ? (db => { type => 'SQLite', name => $good })
                           : (db => { type => 'Oracle' }, db_check => sub { 1 }) }
sub db_bad { $built{SQLite} ? (db => { type => 'SQLite', name => "$dir/none.db" })
                            : (db => { type => 'Oracle', name => 'none' },
                               db_check => sub { 0 }) }

my $n = 0;
sub state_file { "$dir/state" . ++$n }

# A wrapper whose logger appends to a file, so forked processes can report.
sub app {
    my (%o) = @_;
    my $log = delete $o{log} // "$dir/log$n";
    my $app = RT::Extension::HealthEndpoint->wrap(
        sub { [ 200, [], ['app'] ] },
        cache_seconds => 0, timeout => 2, %o,
        logger => sub {
            open my $fh, '>>', $log or die "$log: $!";
            print {$fh} "[$_[0]] $_[1]\n";
            close $fh;
        });
    return ($app, $log);
}

sub status {
    my ($app) = @_;
    my $t0 = time;
    my $r = $app->({ REQUEST_METHOD => 'GET', PATH_INFO => '/healthz/status' });
    return ($r->[0], $r->[2][0], time - $t0);
}

sub slurp { open my $fh, '<', $_[0] or return ''; local $/; <$fh> }

# Run $code in $k forked processes; wait for all; returns their exit codes.
sub in_children {
    my ($k, $code) = @_;
    my @pids;
    for my $i (1 .. $k) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            my $rc = eval { $code->($i); 1 } ? 0 : 1;
            warn $@ if $rc;
            POSIX::_exit($rc);
        }
        push @pids, $pid;
    }
    return map { waitpid($_, 0); $? >> 8 } @pids;
}

subtest 'several processes share one checker and one result' => sub {
    my $state = state_file();
    my ($app, $log) = app(db_ok(), state_file => $state, cache_seconds => 0.5);
    my @rc = in_children(4, sub {
        for (1 .. 20) {
            my ($code) = status($app);
            die "status $code\n" unless $code == 200;
            sleep 0.1;
        }
    });
    is_deeply \@rc, [0, 0, 0, 0], '4 processes x 20 requests: all 200';
    my @c = checkers($state);
    is scalar @c, 1, 'exactly one checker for the state file';
    my ($code) = status($app);
    my $info = RT::Extension::HealthEndpoint::_shared_info($app);
    ok $info->{db_runs} >= 2 && $info->{db_runs} <= 12,
        "$info->{db_runs} runs (2 to 12) for 81 requests over ~2 s "
        . '(CacheSeconds 0.5)';
    ok -f $state && !-l $state, 'the state file exists';
    is sprintf('%o', (stat $state)[2] & 07777), '600', 'mode 0600';
    ok -f "$state.lock", 'the lock file beside it';
    unlike slurp($log), qr/^\[(?:error|warning)\]/m, 'no error logged';
};

subtest 'the checker holds nothing of ours' => sub {
    my $state = state_file();
    my ($app) = app(db_ok(), state_file => $state);
    my %before = proc_status($$);
    my @fd_before = fds($$);
    open my $keep, '<', $0 or die;          # a descriptor it must not get
    my ($code) = status($app);
    is $code, 200, 'ok';
    my ($pid) = checkers($state);
    ok $pid, "a checker runs (pid $pid)";
    my %s = proc_status($pid);
    is $s{Name}, 'rt-he-checker', 'its kernel name (ps -o comm)';
    like proc_cmdline($pid), qr/^rt-healthendpoint checker \(\Q$state\E\)/,
        'its command line names the state file';
    is $s{Threads}, 1, 'one thread';
    is $s{VmRSS} =~ /^(\d+)/ && $1 < 200_000 ? 1 : 0, 1, "its RSS: $s{VmRSS}";
    is((split ' ', $s{Uid})[1], $>, 'runs as this process\'s user');
    isnt $s{PPid}, $$, 'double-forked: not our child';
    my %name = map { my %k = proc_status($_); ($_ => $k{Name} // '') }
               children_of($pid);
    my @kids = grep { $name{$_} =~ /^rt-he-/ } keys %name;
    is scalar(@kids), 1, 'one child process for the one check';
    is $name{$kids[0]}, 'rt-he-idle', 'it waits for the next run';
    my @fd = fds($pid);
    my @extra = grep { $_->[1] !~ m{^(?:/dev/null|\Q$state\E\.lock|socket:.*)$} } @fd;
    is_deeply \@extra, [], 'only /dev/null, its lock file and sockets are open'
        or diag explain \@fd;
    is scalar(grep { $_->[1] =~ /^socket:/ } @fd), 1, 'one socket: the line to its child';
    my @kfd = grep { $_->[1] !~ m{^(?:/dev/null|socket:.*)$} } fds($kids[0]);
    is_deeply \@kfd, [], 'the child holds no lock and nothing of ours'
        or diag explain [fds($kids[0])];
    for my $p ($pid, $kids[0]) {
        my $limits = slurp("/proc/$p/limits");
        like $limits, qr/^Max data size\s+\d+\s+\d+\s+bytes/m, "RLIMIT_DATA is set ($p)";
        like $limits, qr/^Max core file size\s+0\s/m, "no core files ($p)";
    }
    like slurp("/proc/$kids[0]/limits"), qr/^Max cpu time\s+\d+\s/m,
        'the child has a CPU time limit';

    my %after = proc_status($$);
    is $after{Threads}, $before{Threads}, 'this process started no thread';
    close $keep;
    is scalar(fds($$)), scalar(@fd_before), 'and holds no new descriptor';
};

subtest "a check's child process waits for runs; a failed one is replaced" => sub {
    my $state = state_file();
    my ($flag, $slow) = ("$dir/child-ok", "$dir/child-slow");
    open my $fh, '>', $flag or die; close $fh;
    my ($app, $log) = app(state_file => $state, db => { type => 'Oracle' },
                          db_check => sub { sleep 0.02 while -e $slow; -e $flag });
    my ($code) = status($app);
    is $code, 200, 'ok';
    my ($checker) = checkers($state);
    my $child = sub {                   # the check's live child named $want
        my ($want) = @_;
        my @p = grep { my %k = proc_status($_);
                       ($k{Name} // '') eq ($want // 'rt-he-idle')
                           && ($k{State} // 'Z') !~ /^[ZX]/ }
                children_of($checker);
        return $p[0];
    };
    my $first = $child->();
    ok $first, "the check's child (pid $first)";
    status($app) for 1 .. 5;
    is $child->(), $first, 'the same child served 5 more runs';

    unlink $flag;
    ($code) = status($app);
    is $code, 503, 'a failed check';
    my $second = wait_for(1, sub { my $c = $child->(); $c && $c != $first ? $c : undef });
    ok $second && $second != $first, "a new child after the failure ($second)";
    ok wait_for(2, sub { !kill 0, $first }), 'the old one is gone';

    open $fh, '>', $flag or die; close $fh;
    kill 'KILL', $second if $second;
    ($code) = status($app);
    is $code, 200, 'a child killed while it waited: the run forks another';
    my $third = wait_for(1, sub { my $c = $child->(); $c && $c != $second ? $c : undef });
    ok $third && $third != $second, "a new child ($third)";

    open $fh, '>', $slow or die; close $fh;
    my $pid = fork // die;
    if (!$pid) { my ($c) = status($app); POSIX::_exit($c == 503 ? 0 : 1) }
    my $busy = wait_for(2, sub { $child->('rt-he-database') });
    ok $busy, 'a run under way, its child named rt-he-database';
    my $t0 = time;
    kill 'KILL', $busy if $busy;
    waitpid $pid, 0;
    is $?, 0, 'a child killed in the middle of its check: 503';
    cmp_ok time - $t0, '<', 0.9, 'at once, not at the deadline';
    like slurp($log), qr/database check failed \(Oracle, [\d.]+ s\): the check process ended without a result during /,
        'the log says the check process ended';
    unlink $slow;

    # HE_CHILD_RUNS: a child serves at most 100 runs
    ($code) = status($app);
    is $code, 200, 'ok again';
    my $fresh = wait_for(1, $child);
    my $runs = 1;                       # the run just answered
    $runs++, status($app) while $runs < 99;
    is $child->(), $fresh, 'the same child after 99 runs';
    status($app);
    my $next = wait_for(1, sub { my $c = $child->(); $c && $c != $fresh ? $c : undef });
    ok $next && $next != $fresh, 'a new one after the 100th';
};

subtest 'a killed checker is replaced; never two at once' => sub {
    my $state = state_file();
    # a check that takes 1 s: the DBI path, run in the checker's child
    my ($app) = app(state_file => $state, db => { type => 'Oracle' },
                    db_check => sub { sleep 1; 1 });
    my ($code) = status($app);
    is $code, 200, 'first answer ok (1 s)';
    my ($old) = checkers($state);
    ok $old, 'a checker';
    my $max = 0;
    my $pid = fork // die;
    if (!$pid) { my ($c) = status($app); POSIX::_exit($c == 200 ? 0 : 1) }
    sleep 0.3;                               # inside the run
    my @kids = run_children($old);
    ok scalar(@kids), 'a run is under way in a child of the checker';
    kill 'KILL', $old;
    waitpid $pid, 0;
    my ($c2, $body, $took) = status($app);
    is $c2, 200, 'the next answer is right';
    cmp_ok $took, '<=', 2 + 1, sprintf 'within Timeout + 1 s (%.2f s)', $took;
    my @now = checkers($state);
    is scalar @now, 1, 'one checker again';
    isnt $now[0], $old, 'a new one';
    ok wait_for(2, sub { !grep { kill 0, $_ } @kids }), 'the run child died with it';
    for (1 .. 20) {
        my @c = checkers($state);
        $max = @c if @c > $max;
        status($app);
    }
    is $max, 1, 'never two at once over 20 more requests';
};

subtest 'the checker follows the master, not the worker that started it' => sub {
    my $state = state_file();
    my ($app) = app(db_ok(), state_file => $state);
    pipe my $rd, my $wr or die;
    my $master = fork // die;
    if (!$master) {                          # a server master, with workers
        close $rd;
        for my $w (1 .. 2) {
            my $worker = fork // die;
            if (!$worker) {
                my ($c) = status($app);
                syswrite $wr, "$c\n";
                POSIX::_exit(0);             # a worker recycling
            }
            waitpid $worker, 0;
            sleep 0.6;
        }
        close $wr;
        sleep 60;
        POSIX::_exit(0);
    }
    close $wr;
    my @codes = map { chomp; $_ } <$rd>;
    is_deeply \@codes, [200, 200], 'two workers, one after the other: ok' or diag explain \@codes;
    my @c = checkers($state);
    is scalar @c, 1, 'one checker, alive after both workers exited';
    kill 'KILL', $master;
    waitpid $master, 0;
    my $t0 = time;
    ok wait_for(3, sub { !checkers($state) }), 'the master killed: the checker exits';
    cmp_ok time - $t0, '<=', 2, sprintf 'within 2 s (%.2f s)', time - $t0;
};

subtest 'a newer configuration takes over; an older one reads its results' => sub {
    my $state = state_file();
    my ($old, $oldlog) = app(db_ok(), state_file => $state);
    is((status($old))[0], 200, 'old configuration: ok');
    my ($first) = checkers($state);
    sleep 0.01;
    my ($new, $newlog) = app(db_bad(), state_file => $state, log => "$dir/newlog");
    my ($code, undef, $took) = status($new);
    is $code, 503, 'the newer configuration answers with its own check';
    cmp_ok $took, '<', 2 + 1, 'at once';
    my ($second) = checkers($state);
    isnt $second, $first, 'its checker replaced the old one';
    is((status($old))[0], 503, 'the older configuration reads the newer result');
    is_deeply [ checkers($state) ], [$second], 'and leaves its checker alone';
};

subtest 'in the middle of a run: the master dies, a newer configuration comes' => sub {
    # a check that never ends: the DBI callback, there in every build
    my @stalled = (db => { type => 'Oracle' }, db_check => sub { sleep 60; 1 });

    my $state = state_file();
    my ($app) = app(state_file => $state, timeout => 10, @stalled);
    my $master = fork // die;
    if (!$master) {                          # a server master and its worker
        POSIX::setpgid(0, 0);                # a group to clean up
        my $worker = fork // die;
        if (!$worker) { status($app); POSIX::_exit(0) }
        sleep 60;
        POSIX::_exit(0);
    }
    my $busy = wait_for(3, sub { my ($c) = checkers($state); $c && run_children($c) ? $c : undef });
    ok $busy, 'a run under way (Timeout 10 s, a check that never ends)';
    kill 'KILL', $master;
    waitpid $master, 0;
    my $t0 = time;
    ok wait_for(3, sub { !checkers($state) }), 'the master killed: the checker exits';
    cmp_ok time - $t0, '<=', 2, sprintf 'within 2 s, not at the end of the run (%.2f s)',
        time - $t0;
    kill 'KILL', -$master;                   # the orphaned worker, still waiting

    $state = state_file();
    my ($old) = app(state_file => $state, timeout => 2, @stalled);
    my $pid = fork // die;
    if (!$pid) { status($old); POSIX::_exit(0) }
    ok wait_for(3, sub { my ($c) = checkers($state); $c && run_children($c) }),
        'an older configuration\'s run under way';
    sleep 0.01;
    my ($new) = app(db_ok(), state_file => $state, timeout => 3);  # newer
    my ($code, undef, $took) = status($new);
    is $code, 200, 'the newer configuration answers with its own check';
    cmp_ok $took, '<', 1, sprintf 'without waiting for the old run (%.2f s)', $took;
    waitpid $pid, 0;
};

subtest 'state file problems: one log line, then a checker per process' => sub {
    my @cases = (
        [ symlink => sub { symlink "$dir/elsewhere", $_[0] or die } =>
          qr/symbolic link/ ],
        [ 'group-writable' => sub { open my $f, '>', $_[0] or die; chmod 0660, $_[0] } =>
          qr/writable by group or others/ ],
        [ 'not a file' => sub { mkdir $_[0] or die } => qr/(?:not a regular file|Is a directory)/ ],
    );
    push @cases, [ 'foreign owner' => sub {
                       open my $f, '>', $_[0] or die; chmod 0600, $_[0];
                       chown scalar(getpwnam 'nobody'), -1, $_[0] or die } =>
                   qr/belongs to uid \d+/ ] if $> == 0 && getpwnam 'nobody';
    for my $case (@cases) {
        my ($name, $make, $re) = @$case;
        my $state = state_file();
        $make->($state);
        my ($app, $log) = app(db_ok(), state_file => $state);
        my ($code) = status($app);
        is $code, 200, "$name: still answers";
        status($app) for 1 .. 3;
        my @lines = grep { /cannot be used/ } split /\n/, slurp($log);
        is scalar @lines, 1, "$name: said once";
        like $lines[0] // '', $re, "$name: with the reason";
        like $lines[0] // '', qr/each process runs its own checker/, "$name: and what happens";
    }

    my $state = state_file();
    open my $f, '>', $state or die;
    print {$f} 'x' x 10000;
    close $f;
    chmod 0600, $state;
    my ($app, $log) = app(db_ok(), state_file => $state);
    is((status($app))[0], 200, 'a corrupt file of ours is initialised again');
    ok scalar(checkers($state)), 'and used';
    unlike slurp($log), qr/cannot be used/, 'silently';
};

subtest 'each turn is logged once for the instance' => sub {
    my $state = state_file();
    my $db = "$dir/turns.db";
    my $log = "$dir/turns.log";
    my ($app) = app(state_file => $state, log => $log, cache_seconds => 0.2,
                    $built{SQLite} ? (db => { type => 'SQLite', name => $db })
                    : (db => { type => 'Oracle' }, db_check => sub { -e $db }));
    my $round = sub {
        in_children(4, sub { for (1 .. 10) { status($app); sleep 0.05 } });
    };
    $round->();
    my @failed = grep { /database check failed/ } split /\n/, slurp($log);
    is scalar @failed, 1, '4 processes, 40 requests, a failing check: one line';
    system('sqlite3', $db, 'CREATE TABLE Tickets (id INTEGER);') == 0 or die;
    $round->();
    my @again = grep { /database check ok again after [\d.]+ s \(\d+ failed runs\)/ }
                split /\n/, slurp($log);
    is scalar @again, 1, 'the recovery: one line';
    like $again[0] // '', qr/^\[warning\]/, 'at warning level';
};

subtest "a peer's text cannot forge a log line" => sub {
    need_backend('Redis') or return;
    my $peer = start_fake_peer(reply => "-ERR evil\n[error]: forged\r\n");
    my ($app, $log) = app(redis => { server => $peer->addr });
    my ($code) = status($app);
    is $code, 503, 'redis fail';
    my $text = slurp($log);
    like $text, qr/redis check failed .*evil\\x0a\[error\]: forged/, 'the LF is escaped';
    is scalar(() = $text =~ /\n/g), 1, 'one line';
};

subtest 'without a state file: a checker for this process alone' => sub {
    my ($app) = app(db_ok());
    is((status($app))[0], 200, 'ok');
    my @c = grep { proc_cmdline($_) =~ /\(for process $$ only\)/ } checkers();
    is scalar @c, 1, 'a private checker for this process';
    undef $app;
    ok wait_for(2, sub { !grep { $_ == $c[0] } checkers() }),
        'the wrapper freed: it exits';
};

done_testing;
