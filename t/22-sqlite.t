#!perl
# The SQLite check on real files.  The name is an absolute path (RT maps a
# relative DatabaseName under its VarPath before calling wrap).  The check
# must never create or modify the file.
use strict;
use warnings;

use lib 't/lib';
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

done_testing;
