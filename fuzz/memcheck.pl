# fuzz/memcheck.pl - drives every XS path of RT::Extension::HealthEndpoint
# MEMCHECK_ITER times (default 10), for fuzz/valgrind, which runs it under
# valgrind with the servers it started described in the environment:
#   MC_PG        host:port:dbname:user:password of a live PostgreSQL
#   MC_REDIS     host:port:password of a live Redis (requirepass)
#   MC_SQLITE    an SQLite database file;  MC_CLOSED  a port nobody listens on
#   MC_STALLED   host:port of a peer that accepts and never answers
#   MC_DIR       a scratch directory for state files (default: a temp dir)
# Runs without them too (those checks then only fail).  Prints one line
# per phase; dies on a wrong answer.  The random phase is seeded by
# MEMCHECK_SEED (42).  Not a test file: plain perl.
#
# The checks run in a checker process per state (a private state per
# wrapper, or a state file shared by wrappers), forked from this one; this
# process only reads the published result, starts checkers and retires
# them when a wrapper goes.  Under valgrind only this process is judged.
use strict;
use warnings;
use File::Temp qw(tempdir);
use RT::Extension::HealthEndpoint;

my $ITER = $ENV{MEMCHECK_ITER} // 10;
my ($pgh, $pgp, $pgn, $pgu, $pgw) = split /:/, $ENV{MC_PG} // '', 5;
my ($rh, $rp, $rw) = split /:/, $ENV{MC_REDIS} // '127.0.0.1:1:', 3;
my $closed  = $ENV{MC_CLOSED} // 1;
my $sqlite  = $ENV{MC_SQLITE} // '/nonexistent.db';
my $stalled = $ENV{MC_STALLED} // "127.0.0.1:$closed";
my $dir     = $ENV{MC_DIR} // tempdir(CLEANUP => 1);
my $E = 'RT::Extension::HealthEndpoint';
my $n_state = 0;
sub state_file { "$dir/state" . ++$n_state }
mkdir "$dir/a-directory";

my $app = sub { [ 200, [ 'Content-Type' => 'text/plain' ], ['app'] ] };
my $n_logged = 0;
my $logger = sub { $n_logged++ };
my %env = (PATH_INFO => '/healthz/ping', REQUEST_METHOD => 'GET',
           REMOTE_ADDR => '127.0.0.1');

sub req { my ($h, %e) = @_; return $h->({ %env, %e }) }
sub is_status {
    my ($res, $want, $what) = @_;
    die "$what: got $res->[0], want $want\n" unless $res->[0] == $want;
}
sub status { req($_[0], PATH_INFO => '/healthz/status') }

my %pg = (type => 'Pg', host => $pgh, port => $pgp, name => $pgn,
          user => $pgu, password => $pgw);
my @status_cases = (
    [ 'SQLite ok', 200, db => { type => 'SQLite', name => $sqlite } ],
    [ 'SQLite missing', 503, db => { type => 'SQLite', name => '/no/such.db' } ],
    [ 'Pg ok', 200, db => \%pg ],
    [ 'Pg bad password', 503, db => { %pg, password => 'wrong' } ],
    [ 'Pg closed port', 503, db => { %pg, port => $closed } ],
    [ 'Pg stalled', 503, timeout => 0.2,
      db => { %pg, host => (split /:/, $stalled)[0],
              port => (split /:/, $stalled)[1] } ],
    [ 'Redis ok', 200, redis => { server => "$rh:$rp", password => $rw } ],
    [ 'Redis bad password', 503,
      redis => { server => "$rh:$rp", password => 'wrong' } ],
    [ 'Redis closed', 503, redis => { server => "127.0.0.1:$closed" } ],
    [ 'Redis stalled', 503, timeout => 0.2, redis => { server => $stalled } ],
    [ 'Pg + Redis ok', 200, db => \%pg,
      redis => { server => "$rh:$rp", password => $rw, database => 1 } ],
    [ 'Oracle ok', 200, db => { type => 'Oracle' }, db_check => sub { 1 } ],
    [ 'Oracle false', 503, db => { type => 'Oracle' }, db_check => sub { 0 } ],
    [ 'Oracle dies', 503, db => { type => 'Oracle' },
      db_check => sub { die "boom\n" } ],
    [ 'unknown db type', 503, db => { type => 'DB2' } ],
    [ 'logger dies', 503, db => { type => 'DB2' }, quiet => 1,
      logger => sub { die "logger broken\n" } ],
);
@status_cases = grep { $_->[0] !~ /^(?:Pg|Redis|SQLite ok)/ } @status_cases
    unless $ENV{MC_PG} && $ENV{MC_REDIS} && $ENV{MC_SQLITE};

# Odd values for the random phase: wrong types, wide characters, NULs.
my @odd = (undef, '', '0', '1', '-1', '0.5', 'nan', '1e999', "\0", "1\0",
    '/healthz/ping', '/healthz/status', "/\x{263a}", 'x' x 3000, '[::1]:0',
    '10.0.0.0/8', '::/0', '127.0.0.1', 'fe80::1%lo', 'Pg', 'SQLite',
    'Oracle', 'mysql', [], {}, \'x', sub { 1 }, 1.5, -0.0, 1e300,
    "/healthz/ping\n", 'GET', 'HEAD', 'get', "GET\0");
my @keys = qw(ping_path status_path namespace timeout cache_seconds allow_from
              check_redis);
my @subkeys = qw(type host port name user password extra server sock
                 username database sentinels service);
sub odd { $odd[ rand @odd ] }
sub random_round {
    for (1 .. 20) {
        my %o = map { ($keys[ rand @keys ] => odd()) } 1 .. rand 5;
        $o{db} = { map { ($subkeys[ rand @subkeys ] => odd()) } 1 .. rand 4,
                   type => 'DB2' } if rand() < 0.5;
        $o{redis} = { map { ($subkeys[ rand @subkeys ] => odd()) } 1 .. 3,
                      server => "127.0.0.1:$closed" } if rand() < 0.3;
        $o{timeout} = 0.2;
        my $h = eval { $E->wrap($app, logger => $logger, %o) } or next;
        for (1 .. 10) {
            my %e = map { ($_ => odd()) } qw(PATH_INFO REQUEST_METHOD
                                            REMOTE_ADDR);
            $e{PATH_INFO} = rand() < 0.5 ? '/healthz/ping' : '/healthz/status'
                if rand() < 0.6;
            my $res = eval { $h->({ %e }) };
        }
    }
}
srand($ENV{MEMCHECK_SEED} // 42);

for my $i (1 .. $ITER) {
    random_round();
    # wrap creation and destruction, valid and invalid options
    for my $opts (
        [],
        [ ping_path => '/p', status_path => '/s', timeout => '0.5',
          cache_seconds => 0, allow_from => [ '10.0.0.0/8', '::1' ] ],
        [ ping_path => 'bad', timeout => 'nan', cache_seconds => -1,
          allow_from => [ '10.0.0.0/99', 'x' ], check_redis => 2 ],
        [ ping_path => "/nul\0byte", status_path => '/same',
          db => { type => 'Pg', extra => { sslmode => 'disable', x => undef } },
          redis => { server => '[::1', sentinels => [ 's1', '[bad' ],
                     database => 'x' } ],
        [ db => 'not a hash', redis => [], allow_from => {} ],
        [ db => { type => 'SQLite', name => 'relative.db' } ],
        [ namespace => '' ], [ namespace => '/lb/' ], [ namespace => '/Admin' ],
        [ namespace => '//' ], [ namespace => undef ],
        [ allow_from => '10.0.0.0/8, 192.168.0.0/255.255.0.0 fe80::1%lo' ],
        [ allow_from => [ 'bad', [] ] ],
        [ state_file => state_file() ], [ state_file => 'relative' ],
        [ state_file => "$dir/a-directory" ],
        [ state_file => "$dir/no/such/dir/state" ],
    ) {
        my $h = $E->wrap($app, logger => $logger, @$opts);
        my $c = RT::Extension::HealthEndpoint::_effective_config($h);
        die "no config\n" unless $c->{ping_path};
        RT::Extension::HealthEndpoint::_shared_info($h);
    }
    for my $bad (
        sub { $E->wrap('not code') },
        sub { $E->wrap($app, no_such_option => 1) },
        sub { $E->wrap($app, logger => 'not code') },
        sub { $E->wrap($app, db_check => 'not code') },
        sub { $E->_new('not code', undef, undef, [], undef) },
        sub { $E->_new($app, undef, undef, [], "/tmp/nul\0byte") },
        sub { $E->wrap($app, state_file => "$dir/nul\0byte") },
        sub { RT::Extension::HealthEndpoint::_effective_config($app) },
        sub { RT::Extension::HealthEndpoint::_effective_config('x') },
    ) {
        eval { $bad->(); 1 } and die "expected an error\n";
    }
    my @b = RT::Extension::HealthEndpoint::backends();

    # the request paths that never check anything
    my $h = $E->wrap($app, logger => $logger, cache_seconds => 0,
                     allow_from => ['127.0.0.0/8']);
    is_status(req($h), 200, 'ping');
    is_status(req($h, REQUEST_METHOD => 'HEAD'), 200, 'ping HEAD');
    is_status(req($h, REQUEST_METHOD => 'POST'), 405, 'POST');
    is_status(req($h, REQUEST_METHOD => undef), 405, 'no method');
    is_status(req($h, REMOTE_ADDR => '10.1.1.1'), 403, 'allow_from');
    is_status(req($h, REMOTE_ADDR => undef), 403, 'no REMOTE_ADDR');
    is_status(req($h, REMOTE_ADDR => []), 403, 'REMOTE_ADDR ref');
    is_status(req($h, PATH_INFO => '/healthz/status', REMOTE_ADDR => 'x'),
              403, 'status forbidden');
    is_status(req($h, PATH_INFO => '/other'), 200, 'pass-through');
    is_status(req($h, PATH_INFO => undef), 200, 'PATH_INFO undef');
    is_status(req($h, PATH_INFO => {}), 200, 'PATH_INFO ref');
    # the namespace /healthz is ours: 404 for any method, 403 first
    is_status(req($h, PATH_INFO => "/healthz/ping\0"), 404, 'PATH_INFO NUL');
    is_status(req($h, PATH_INFO => '/healthz'), 404, 'namespace');
    is_status(req($h, PATH_INFO => '/healthz/x', REQUEST_METHOD => 'HEAD'),
              404, 'namespace HEAD');
    is_status(req($h, PATH_INFO => '/healthz/x', REQUEST_METHOD => 'POST'),
              404, 'namespace POST');
    is_status(req($h, PATH_INFO => '/healthz/x', REMOTE_ADDR => '10.0.0.1'),
              403, 'namespace forbidden');
    is_status(req($h, PATH_INFO => '/healthzx'), 200, 'beside the namespace');
    is_status(req($h, PATH_INFO => '/HEALTHZ/ping'), 200, 'case: RT\'s');
    my @list = $h->({ %env, PATH_INFO => '/x' });
    $h->({ %env, PATH_INFO => '/x' });                     # void context
    my $dies = $E->wrap(sub { die "app died\n" }, logger => $logger);
    eval { $dies->({ %env, PATH_INFO => '/x' }); 1 } and die "no death\n";
    my $many = $E->wrap(sub { (1, 2, 3) }, logger => $logger);
    my @three = $many->({ %env, PATH_INFO => '/x' });
    die "pass-through list\n" unless "@three" eq '1 2 3';
    for my $bad_env (sub { $h->() }, sub { $h->('x') }, sub { $h->([]) },
                     sub { $h->(\'x') }) {
        eval { $bad_env->(); 1 } and die "bad env accepted\n";
    }

    # status with every backend, fresh handler each time (cache off/on)
    for my $case (@status_cases) {
        my ($name, $want, %o) = @$case;
        # the wrapper falls back to STDERR when the logger dies: hide that
        open my $saved, '>&', \*STDERR or die "dup STDERR: $!";
        open STDERR, '>', '/dev/null' if delete $o{quiet};
        my $sh = $E->wrap($app, logger => $logger, cache_seconds => 0,
                          timeout => 5, %o);
        is_status(status($sh), $want, $name);
        is_status(req($sh, PATH_INFO => '/healthz/status',
                      REQUEST_METHOD => 'HEAD'), $want, "$name HEAD");
        my $cached = $E->wrap($app, logger => $logger, cache_seconds => 60,
                              timeout => 5, %o);
        is_status(status($cached), $want, "$name cached") for 1 .. 2;
        RT::Extension::HealthEndpoint::_shared_info($cached);
        open STDERR, '>&', $saved or die "restore STDERR: $!";
    }

    # two wrappers on one state file share one checker and its result
    my $file = state_file();
    my @shared = map {
        $E->wrap($app, logger => $logger, cache_seconds => 60, timeout => 5,
                 state_file => $file, db => { type => 'DB2' })
    } 1 .. 2;
    is_status(status($_), 503, 'shared state file') for @shared, @shared;
    my $info = RT::Extension::HealthEndpoint::_shared_info($shared[1]);
    die "shared state: not the file\n" unless $info->{file};
    die "shared state: $info->{db_runs} runs\n" unless $info->{db_runs} == 1;
    # a file's checker follows the server's master (here: whoever started
    # this script) or a 5-minute lease; it is ours, so it goes now
    kill 'KILL', $info->{checker_pid} if $info->{checker_pid} > 0;
    @shared = ();
    print "iteration $i done\n" if $i == 1 || $i == $ITER;
}
print "memcheck.pl: $ITER iterations, ", scalar(@status_cases),
      " status cases, $n_logged log lines\n";
