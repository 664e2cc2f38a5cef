#!/usr/bin/perl
# fuzz/state-seeds.pl - write the seed corpus of fuzz/state_fuzz.c into
# fuzz/corpus/state/ (run it again when xs/he_shared.h changes the layout
# of he_pub or of the fields state_fuzz.c fills; see its input layout).
#
# Each seed is a state a reader meets in life - or after a crash, a bug or
# a hand edit: a fresh, an aging and an old result, one that never ran,
# one from the future or before the clock's start, an older configuration,
# a turn to fail, a failure a minute old, a recovery, a run in progress, a
# writer that died mid-write, reasons without their NUL; and state files:
# garbage, short, long, ours, a newer layout, group-writable, a symlink.
use strict;
use warnings;
use FindBin;

my $dir = "$FindBin::Bin/corpus/state";
mkdir $dir;

my $S = 1_000_000_000;                  # ns per second
my $AT = 1000 * $S;                     # when the sample result ran

# flags of byte 0 (see state_fuzz.c)
my ($FILE, $HEADER, $FIELDS, $REL, $HASH, $DB, $REDIS, $ODD)
    = (1, 2, 4, 8, 16, 32, 64, 128);

# The 22 control bytes: flags, file flags, cache ms, timeout ms, now, stamp.
sub ctl {
    my (%o) = @_;
    return pack('C C v v q< q<', $o{flags}, $o{fflags} // 0,
                $o{cache_ms} // 1000, $o{timeout_ms} // 2000,
                $o{now} // 0, $o{stamp} // 0);
}

# he_pub_check: result event at elapsed runs failures fail_since fail_runs
# ended_runs ended_after (64 bytes)
sub check {
    my (%c) = @_;
    return pack('l< L< q< q< Q< Q< q< L< L< q<', $c{result} // -1,
                $c{event} // 0, $c{at} // 0, $c{elapsed} // $S / 4,
                $c{runs} // 1, $c{failures} // 0, $c{fail_since} // 0,
                $c{fail_runs} // 0, $c{ended_runs} // 0,
                $c{ended_after} // 0);
}

# The "fields" state: pub, changecount, result_seq, logged_event[2],
# reminded_ns[2], running, slot {done, result} x 2, reason[2][512].
sub fields {
    my (%f) = @_;
    my $pub = pack('Q< q<', $f{hash} // 0, $f{config_stamp} // 0)
        . check(%{ $f{db} // {} }) . check(%{ $f{redis} // {} })
        . pack('a16', $f{db_type} // 'Pg');
    return $pub . pack('L< L< L< L< q< q< L< L< l< L< l<',
                       $f{changecount} // 2, $f{result_seq} // 1,
                       @{ $f{logged} // [0, 0] }, @{ $f{reminded} // [0, 0] },
                       $f{running} // 0, @{ $f{slots} // [0, 0, 0, 0] })
        . pack('a512 a512', @{ $f{reasons} // ['', ''] });
}

my $f = $FIELDS | $HASH | $DB;
my %ok = (db => { result => 0, at => $AT }, redis => { result => 2, at => $AT });
my %seeds = (
    'fresh-ok'       => ctl(flags => $f | $REL, now => $S / 2) . fields(%ok),
    'refresh'        => ctl(flags => $f | $REL, now => $S * 3 / 2) . fields(%ok),
    'wait-old'       => ctl(flags => $f | $REL, now => 60 * $S) . fields(%ok),
    'cache-0'        => ctl(flags => $f | $REL, cache_ms => 0) . fields(%ok),
    'never-ran'      => ctl(flags => $f, now => $AT) . fields(),
    'future'         => ctl(flags => $f, now => $AT - $S) . fields(%ok),
    'before-clock'   => ctl(flags => $f, now => 1_000_000 * $S)
                        . fields(%ok, db => { result => 0, at => -2**63 }),
    'older-config'   => ctl(flags => $f & ~$HASH, now => $AT, stamp => 5 * $S)
                        . fields(%ok, config_stamp => 4 * $S),
    'newer-config'   => ctl(flags => $f & ~$HASH, now => $AT, stamp => 5 * $S)
                        . fields(%ok, config_stamp => 6 * $S),
    'turn-to-fail'   => ctl(flags => $f | $REL)
                        . fields(db => { result => 1, event => 1, at => $AT,
                                         failures => 1, fail_since => $AT,
                                         fail_runs => 1 },
                                 redis => { result => 2, at => $AT },
                                 reasons => ['connection refused', '']),
    'still-failing'  => ctl(flags => $f | $REL, now => 30 * $S)
                        . fields(db => { result => 1, event => 1, at => $AT,
                                         fail_since => $AT - 90 * $S,
                                         fail_runs => 9 },
                                 redis => { result => 2, at => $AT },
                                 logged => [1, 0],
                                 reminded => [$AT - 61 * $S, 0],
                                 reasons => ['timed out after 2.000 s', '']),
    'recovered'      => ctl(flags => $f | $REL | $REDIS)
                        . fields(db => { result => 0, event => 2, at => $AT,
                                         ended_runs => 3,
                                         ended_after => 7 * $S },
                                 redis => { result => 1, event => 5,
                                            at => $AT, fail_since => 0,
                                            fail_runs => 1 },
                                 logged => [1, 4],
                                 reasons => ['', 'NOAUTH Authentication required']),
    'running'        => ctl(flags => $f | $REL | $REDIS, now => 10 * $S)
                        . fields(%ok, running => 1, slots => [1, 0, 0, 0]),
    'writer-died'    => ctl(flags => $f | $REL | $ODD)
                        . fields(%ok, changecount => 3),
    'no-nul'         => ctl(flags => $f | $REL)
                        . fields(db => { result => 1, event => 1, at => $AT },
                                 db_type => 'T' x 16,
                                 reasons => ['x' x 512, 'y' x 512]),
    'raw-zero'       => ctl(flags => $HEADER) . ("\0" x 2456),
    'file-garbage'   => ctl(flags => $FILE) . 'garbage' x 40,
    'file-short'     => ctl(flags => $FILE) . 'HEST',
    'file-other-boot' => ctl(flags => $FILE)
                        . pack('a4 L< L< L< a16 a40', 'HEST', 1, 8192, 0,
                               '0.01', 'not-this-boot'),
    'file-old-layout' => ctl(flags => $FILE)
                        . pack('a4 L< L< L<', 'HEST', 0, 8192, 0),
    'file-ours'      => ctl(flags => $FILE | $HEADER) . ("\0" x 100),
    'file-long'      => ctl(flags => $FILE | $HEADER) . ("\0" x 8300),
    'file-newer'     => ctl(flags => $FILE | $HEADER, fflags => 4),
    'file-writable'  => ctl(flags => $FILE | $HEADER, fflags => 1),
    'file-symlink'   => ctl(flags => $FILE, fflags => 2) . 'x',
    'file-empty'     => ctl(flags => $FILE),
);
for my $name (sort keys %seeds) {
    open my $fh, '>:raw', "$dir/$name" or die "$dir/$name: $!";
    print {$fh} $seeds{$name};
    close $fh or die "$dir/$name: $!";
}
printf "%d seeds in %s\n", scalar(keys %seeds), $dir;
