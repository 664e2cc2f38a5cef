#!perl
# The SQLite check on real files.  The name is an absolute path (RT maps a
# relative DatabaseName under its VarPath before calling wrap).  The check
# must never create or modify the file.
use strict;
use warnings;

use lib 't/lib';
use Config;
use Fcntl qw(F_SETLK F_GETLK F_RDLCK F_WRLCK F_UNLCK);
use POSIX ();
use Test::More;
use File::Spec;
use HETest::Servers qw(:all);
use HETest::Util qw(:all);
use RT::Extension::HealthEndpoint;
use HEBuild qw(skip_all_if_omitted);

skip_all_if_omitted('SQLite');
need_server(sub { grep { $_ eq 'SQLite' } RT::Extension::HealthEndpoint::backends() },
            'RT::Extension::HealthEndpoint was built without the SQLite backend');
need_server(sub { eval { require DBD::SQLite; 1 } || find_binary('sqlite3') },
            'DBD::SQLite or the sqlite3 command, to create the test database');

my $dir = scratch_dir('sqlite');
my $file = make_sqlite("$dir/rt4.db");

sub slurp { open my $fh, '<:raw', $_[0] or return undef; local $/; <$fh> }
sub sqlite_db { (type => 'SQLite', name => $_[0]) }

subtest 'an existing database' => sub {
    my $before = slurp($file);
    my @st = stat $file;
    my $r = status_of(db => { sqlite_db($file) });
    expect_status($r, database => 'ok', redis => 'skipped', 'ok');
    is slurp($file), $before, 'the file is unchanged';
    is((stat $file)[9], $st[9], 'mtime unchanged');
    ok !-e "$file-journal" && !-e "$file-wal" && !-e "$file-shm",
        'no journal, WAL or shm file left behind';
};

subtest 'host, port, user and password are ignored' => sub {
    my $r = status_of(db => { sqlite_db($file), host => 'db.invalid',
                              port => 1, user => 'x', password => 'y' });
    expect_status($r, database => 'ok', redis => 'skipped', 'ok');
};

subtest 'a missing file is a failure and is not created' => sub {
    my $missing = "$dir/missing.db";
    my $r = status_of(db => { sqlite_db($missing) });
    expect_status($r, database => 'fail', redis => 'skipped', 'fail');
    logged_error($r, qr/database check failed/, 'logged');
    ok !-e $missing, 'the file was not created';

    my $deep = "$dir/no/such/dir/rt4.db";
    $r = status_of(db => { sqlite_db($deep) });
    expect_status($r, database => 'fail', redis => 'skipped',
                  'in a missing directory: fail');
    ok !-e "$dir/no", 'no directory was created';
};

subtest 'a file that is not a database' => sub {
    my $junk = "$dir/junk.db";
    open my $fh, '>', $junk or die $!;
    print $fh "this is not an SQLite database\n" x 200;
    close $fh;
    my $before = slurp($junk);
    my $r = status_of(db => { sqlite_db($junk) });
    expect_status($r, database => 'fail', redis => 'skipped', 'fail');
    logged_error($r, qr/database check failed.*not a database/s,
                 "SQLite's message is logged");
    is slurp($junk), $before, 'the file is unchanged';
};

subtest 'a directory' => sub {
    my $r = status_of(db => { sqlite_db($dir) });
    expect_status($r, database => 'fail', redis => 'skipped', 'fail');
    logged_error($r, qr/database check failed/, 'logged');
};

subtest 'no name' => sub {
    my $r = status_of(db => { type => 'SQLite' });
    expect_status($r, database => 'fail', redis => 'skipped', errors_ok => 1,
                  'fail');
    logged_error($r, qr/database check failed|name/, 'logged');
};

SKIP: {
    skip 'root reads files whatever their mode', 1 if $> == 0;
    subtest 'an unreadable file' => sub {
        my $locked = make_sqlite("$dir/locked.db");
        chmod 0000, $locked;
        my $r = status_of(db => { sqlite_db($locked) });
        expect_status($r, database => 'fail', redis => 'skipped', 'fail');
        logged_error($r, qr/database check failed/, 'logged');
        chmod 0600, $locked;
    };
}

subtest 'the file disappears and comes back' => sub {
    my $h = new_app(db => { sqlite_db($file) });
    expect_status(probe($h), database => 'ok', redis => 'skipped', 'ok');
    rename $file, "$file.away" or die $!;
    expect_status(probe($h), database => 'fail', redis => 'skipped', 'fail while gone');
    ok !-e $file, 'not recreated';
    rename "$file.away", $file or die $!;
    expect_status(probe($h), database => 'ok', redis => 'skipped', 'ok again');
};

subtest 'a database RT cannot run on' => sub {
    my $empty = "$dir/empty.db";
    open my $fh, '>', $empty or die;
    close $fh;
    my $r = status_of(db => { sqlite_db($empty) });
    expect_status($r, database => 'fail', redis => 'skipped',
                  'a zero-length file (a valid, empty database): fail');
    logged_error($r, qr/has no tables/, 'the reason');
    ok -z $empty, 'still empty: opened read-only';

    $r = status_of(db => { sqlite_db($file), require_table => 'Tickets' });
    expect_status($r, database => 'fail', redis => 'skipped',
                  "inside RT a database without RT's Tickets table: fail");
    logged_error($r, qr/no table Tickets: not RT's database/, 'the reason');
    my $rt = make_sqlite("$dir/rt-like.db");
    system('sqlite3', $rt, 'CREATE TABLE Tickets (id INTEGER PRIMARY KEY);') == 0
        or die 'sqlite3';
    $r = status_of(db => { sqlite_db($rt), require_table => 'Tickets' });
    expect_status($r, database => 'ok', redis => 'skipped', 'with it: ok');
};

subtest "RT's own locks on the file survive a check" => sub {
    # POSIX locks belong to a process, and close() drops every lock the
    # process holds on the file: the check must not open RT's file here.
    # struct flock as Linux lays it out on 64-bit machines.
    plan skip_all => 'struct flock layout known only for 64-bit Linux'
        unless $^O eq 'linux' && $Config{ivsize} == 8;
    my $flock = sub { pack 's s x4 q q l x4', $_[0], 0, 0, 0, 0 };
    open my $fh, '<', $file or die $!;
    fcntl($fh, F_SETLK, $flock->(F_RDLCK)) or die "F_SETLK: $!";
    my $r = status_of(db => { sqlite_db($file) });
    expect_status($r, database => 'ok', redis => 'skipped', 'checked: ok');
    pipe my $rd, my $wr or die;
    my $pid = fork // die;
    if (!$pid) {                        # another process asks for a write lock
        open my $c, '+<', $file or POSIX::_exit(2);
        my $want = $flock->(F_WRLCK);
        fcntl($c, F_GETLK, $want) or POSIX::_exit(3);
        my ($type, undef, undef, undef, $holder) = unpack 's s x4 q q l x4', $want;
        syswrite $wr, ($type == F_UNLCK ? 'none' : $holder);
        POSIX::_exit(0);
    }
    close $wr;
    my $holder = <$rd>;
    waitpid $pid, 0;
    is $holder, $$, 'our read lock, taken through another descriptor, is still held';
    close $fh;
};

done_testing;
